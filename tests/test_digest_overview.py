"""A digest route with `ai = true`: one AI call per digest writes an overview of the
period, with personal data aliased exactly as for a single notification and put back in
the email; the AI down, the digest still goes out, marked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from herald.digests import store
from herald.digests.collect import run_tick
from herald.errors import TransientError
from herald.testing import FakeSummariser
from tests.helpers import ROUTES, make_settings, sql

pytestmark = pytest.mark.integration

MEMBERS = {
    "name": "member-digest",
    "table": "members",
    "operations": ["INSERT"],
    "recipients": ["ops@example.com"],
    "mode": "digest",
    "digest": "weekly mon 08:00",
    "digest_timezone": "Europe/London",
    "ai": True,
    "digest_max_items": 5,
}


def add_members(url: str, n: int) -> None:
    sql(url, "INSERT INTO members (first_name, last_name, email, phone) "
             "SELECT 'Ann' || i, 'Lee' || i, 'ann' || i || '@example.org', "
             "'+44 20 7946 ' || lpad(i::text, 4, '0') FROM generate_series(1, %s::int) AS i",
        (n,))  # fmt: skip


def send_digest(pipeline) -> None:
    now = datetime.now(UTC)
    run_tick(pipeline.pool, pipeline.settings, pipeline.publish, now=lambda: now)
    due = store.due_after("weekly mon 08:00", "Europe/London", now)
    run_tick(pipeline.pool, pipeline.settings, pipeline.publish, now=lambda: due)
    pipeline.drain()


def test_one_ai_call_per_digest_sees_aliases_only_and_the_email_the_real_values(
    stub_pipeline, herald_db
):
    stub_pipeline.use(
        settings=make_settings(herald_db, {**ROUTES, "routes": [MEMBERS]}),
        summariser=FakeSummariser("FIRST_NAME_1 and 7 others joined; write to EMAIL_1."),
    )
    add_members(herald_db, 8)
    stub_pipeline.orchestrate()
    send_digest(stub_pipeline)

    calls = stub_pipeline.summariser.calls
    assert len(calls) == 1 and len(calls[0]) == 5  # the listed changes, in one call
    seen = repr(calls)
    for i in range(1, 9):
        for value in (f"Ann{i}'", f"Lee{i}'", f"ann{i}@example.org", f"7946 {i:04d}"):
            assert value not in seen
    (sent,) = stub_pipeline.mailer.sent
    body = sent.message.get_body(("plain",)).get_content()
    assert "Overview" in body and "Ann8 and 7 others joined" in body
    assert body.count(" · change #") == 5 and "and 3 more changes" in body
    run = sql(herald_db, "SELECT overview_status, overview_aliases FROM herald.digest_runs")
    assert run == [{"overview_status": "ok", "overview_aliases": None}]  # forgotten once sent


def test_the_ai_down_sends_the_digest_anyway_marked(stub_pipeline, herald_db):
    stub_pipeline.use(
        settings=make_settings(herald_db, {**ROUTES, "routes": [MEMBERS]}),
        summariser=FakeSummariser(error=TransientError("AI unreachable: connection refused")),
    )
    add_members(herald_db, 3)
    stub_pipeline.orchestrate()
    send_digest(stub_pipeline)

    (sent,) = stub_pipeline.mailer.sent
    body = sent.message.get_body(("plain",)).get_content()
    assert "Overview unavailable" in body and body.count(" · change #") == 3
    job = sql(herald_db, "SELECT status, last_error FROM herald.jobs")
    assert job[0]["status"] == "complete" and "Overview unavailable" in job[0]["last_error"]
    assert sql(herald_db, "SELECT overview_status FROM herald.digest_runs") == [
        {"overview_status": "unavailable"}]  # fmt: skip


def test_a_retried_send_does_not_ask_the_ai_again(stub_pipeline, herald_db):
    stub_pipeline.use(settings=make_settings(herald_db, {**ROUTES, "routes": [MEMBERS]}))
    stub_pipeline.mailer.fail_next(TransientError("421 try later"))
    add_members(herald_db, 2)
    stub_pipeline.orchestrate()
    send_digest(stub_pipeline)

    assert len(stub_pipeline.summariser.calls) == 1
    assert len(stub_pipeline.mailer.sent) == 1 and stub_pipeline.mailer.attempts == 2
    assert sql(herald_db, "SELECT status, attempts FROM herald.digest_runs") == [
        {"status": "sent", "attempts": 2}]  # fmt: skip
