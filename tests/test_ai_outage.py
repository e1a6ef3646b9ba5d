"""An AI outage delays nobody: a send route's email waits at most `[ai] max_delay_seconds`
for its summary, whatever the AI does; with the circuit open it goes out plain at once; a
hold route keeps waiting. In process (stub pipeline), end to end on real services, and in
`herald demo`."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import subprocess
import sys
import time

import pytest

from herald import ledger
from herald.config import ConfigError, settings_from_mapping
from herald.email.deliver import SUMMARY_UNAVAILABLE
from herald.enrich.deadline import SummaryDeadline
from herald.errors import TransientError
from herald.testing import FakeSummariser
from tests.helpers import ROUTES, make_settings, sql
from tests.services import free_port, wait_until
from tests.workers import Worker, orchestrate

UNAVAILABLE = SUMMARY_UNAVAILABLE.split(":")[0]  # "Summary unavailable"


def longest_wait(url: str) -> float:
    """Seconds from a notification's creation to its latest email's sending, at most."""
    [row] = sql(
        url,
        "SELECT extract(epoch FROM max(d.sent_at - n.created_at))::float8 AS s, count(*) AS n "
        "FROM herald.deliveries d JOIN herald.notifications n ON n.id = d.notification_id "
        "WHERE d.status = 'sent'",
    )
    return float(row["s"] or 0.0)


def body(sent) -> str:
    return sent.message.get_body(("plain",)).get_content()


# -- the deadline itself ----------------------------------------------------------------------


def test_max_delay_defaults_to_a_minute_and_must_leave_room_for_one_call():
    assert settings_from_mapping({}, {}).ai.max_delay_seconds == 60.0
    with pytest.raises(ConfigError, match="timeout_seconds x .* must be under max_delay"):
        settings_from_mapping({"ai": {"timeout_seconds": 20, "max_delay_seconds": 20}}, {})
    with pytest.raises(ConfigError, match="timeout_seconds x"):
        settings_from_mapping({"ai": {"max_retries": 2}}, {})  # 20 s x 3 tries
    with pytest.raises(ConfigError, match="max_delay_seconds must be a number above 0, not 0"):
        settings_from_mapping({"ai": {"max_delay_seconds": 0}}, {})


def test_the_deadline_counts_from_when_the_notification_was_due_by_the_databases_clock():
    settings = settings_from_mapping({"ai": {"max_delay_seconds": 60, "timeout_seconds": 20}}, {})
    now = [1000.0]
    deadline = SummaryDeadline.of(
        {"on_ai_failure": "send", "due_for_seconds": 25.0}, settings, clock=lambda: now[0]
    )
    assert deadline is not None
    assert deadline.left() == 35.0 and deadline.slack() == 15.0 and deadline.allows_call()
    assert deadline.retry_in_ms(120_000) == 14_000  # cut to the last chance, less a margin
    assert deadline.retry_in_ms(5_000) == 5_000
    now[0] += 15.2
    assert not deadline.allows_call() and deadline.retry_in_ms(5_000) == 0
    assert SummaryDeadline.of({"on_ai_failure": "hold", "due_for_seconds": 0}, settings) is None


# -- in process: the stub pipeline, a fake model that fails -----------------------------------


def outage_settings(url: str, *, on_ai_failure: str = "send", max_delay: float = 2.0):
    """The members route (AI) with a short deadline, no breaker (the deadline alone acts)."""
    routes = [{**r, "on_ai_failure": on_ai_failure} for r in ROUTES["routes"]]
    ai = {**ROUTES["ai"], "max_delay_seconds": max_delay, "timeout_seconds": 0.5}
    raw = {**ROUTES, "ai": ai, "routes": routes, "breakers": {"failure_threshold": 0},
           "retries": {"enrich": {"max_retries": 1000}}}  # fmt: skip
    return make_settings(url, raw)


def test_a_send_routes_email_waits_no_longer_than_max_delay_for_a_failing_ai(
    herald_db, stub_pipeline
):
    failing = FakeSummariser(error=TransientError("AI server error (HTTP 500)"))
    stub_pipeline.use(settings=outage_settings(herald_db), summariser=failing)
    # The configured backoff (5 s and more) would overshoot the 2 s deadline: the actor
    # brings the next try forward, then gives up on the summary in time.
    stub_pipeline.actors.enrich.options.update(min_backoff=5_000, max_backoff=120_000)
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('Ann')")
    stub_pipeline.orchestrate()
    [sent] = stub_pipeline.mailer.sent
    assert UNAVAILABLE in body(sent)
    assert len(failing.calls) >= 2  # tried again, before the deadline
    waited = longest_wait(herald_db)
    print(f"\nsend route, AI failing, max_delay_seconds = 2: the email waited {waited:.2f}s")
    assert waited < 2.0 + 0.5
    [job] = sql(herald_db, "SELECT * FROM herald.jobs WHERE actor = 'enrich'")
    assert job["status"] == "complete" and "max_delay_seconds" in job["last_error"]


def test_a_notification_past_its_deadline_goes_out_without_asking_the_model(
    herald_db, stub_pipeline
):
    """An enrich job that starts too late for a call to end in time (a backlog, a worker
    that died mid-call and was redelivered) sends the email at once."""
    summariser = FakeSummariser("A summary.")
    stub_pipeline.use(settings=outage_settings(herald_db), summariser=summariser)
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('Ann')")
    [change] = sql(herald_db, "SELECT id FROM herald.change_log")
    # Its notification has been due for 1.8 s of its 2: no call of up to 0.5 s fits.
    rows = sql(
        herald_db,
        "WITH n AS (INSERT INTO herald.notifications (route, table_name, change_ids, "
        "recipients, ai, created_at) VALUES ('new-members', 'public.members', ARRAY[%(c)s]::"
        "bigint[], '{ops@example.com}', true, clock_timestamp() - interval '1.8 seconds') "
        "RETURNING id) INSERT INTO herald.jobs (message_id, actor, queue, notification_id, "
        "change_id) SELECT gen_random_uuid(), 'enrich', 'enrich', n.id, %(c)s FROM n "
        "RETURNING id, message_id, actor, queue, priority",
        {"c": change["id"]},
    )
    stub_pipeline.publish(ledger.job_refs(rows))
    stub_pipeline.drain()
    [sent] = stub_pipeline.mailer.sent
    assert UNAVAILABLE in body(sent) and summariser.calls == []
    [job] = sql(herald_db, "SELECT * FROM herald.jobs WHERE actor = 'enrich'")
    assert "no summary within [ai] max_delay_seconds (2s)" in job["last_error"]


def test_a_hold_route_keeps_waiting_for_the_summary_past_max_delay(herald_db, stub_pipeline):
    summariser = FakeSummariser("Ann joined.", error=TransientError("AI server error (500)"))
    stub_pipeline.use(
        settings=outage_settings(herald_db, on_ai_failure="hold", max_delay=1.0),
        summariser=summariser,
    )
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('Ann')")
    stub_pipeline.actors.orchestrate.send()
    time.sleep(2.0)  # twice the deadline of a send route
    assert stub_pipeline.mailer.sent == [] and len(summariser.calls) > 10
    summariser.error = None  # the AI is back
    stub_pipeline.drain()
    [sent] = stub_pipeline.mailer.sent
    assert "Ann joined." in body(sent)
    assert longest_wait(herald_db) > 2.0


# -- end to end: real workers, RabbitMQ, PostgreSQL, SMTP, an AI answering 500 ---------------

OUTAGE_TOML = """
[mail]
from = "Herald <herald@example.com>"

[ai]
model = "test-model"
{ai}

{breakers}

[[routes]]
name = "members"
table = "members"
operations = ["INSERT"]
recipients = ["ops@example.com"]
ai = true
on_ai_failure = "send"
"""


def run_outage(herald_env, herald_db, openai_server, smtp_server, tmp_path, toml, name):
    """20 member changes while the AI answers 500 to everything: the longest wait."""
    config = tmp_path / f"{name}.toml"
    config.write_text(toml)
    env = {**herald_env, "HERALD_CONFIG": str(config), "HERALD_WAKER": "off"}
    openai_server.fail_for(600, status=500)
    sql(
        herald_db,
        "INSERT INTO members (first_name, email) "
        "SELECT 'm' || i, 'm' || i || '@example.org' FROM generate_series(1, 20) i",
    )
    worker = Worker(env, tmp_path / f"{name}.log", threads=8)
    try:
        started = time.monotonic()
        orchestrate(env)
        done = wait_until(
            lambda: (
                sql(herald_db, "SELECT count(*) AS n FROM herald.deliveries WHERE status = 'sent'")[
                    0
                ]["n"]
                == 20
            ),  # fmt: skip
            timeout=120,
            interval=0.2,
        )
        elapsed = time.monotonic() - started
    finally:
        worker.stop()
    assert done, (tmp_path / f"{name}.log").read_text()[-3000:]
    summaries = sql(herald_db, "SELECT status, count(*) AS n FROM herald.summaries GROUP BY 1")
    assert summaries == [{"status": "unavailable", "n": 20}]
    return longest_wait(herald_db), elapsed, len(openai_server.requests)


@pytest.mark.integration
@pytest.mark.slow
def test_end_to_end_with_the_ai_failing_no_email_waits_past_max_delay(
    herald_env, herald_db, openai_server, smtp_server, tmp_path
):
    # No breaker: the deadline alone decides (retries with the default backoff, 5 s up).
    waited, elapsed, calls = run_outage(
        herald_env, herald_db, openai_server, smtp_server, tmp_path,
        OUTAGE_TOML.format(ai="max_delay_seconds = 5\ntimeout_seconds = 2",
                           breakers="[breakers]\nfailure_threshold = 0"),
        "deadline",
    )  # fmt: skip
    print(f"\nAI answering 500, max_delay_seconds = 5, no breaker: longest wait {waited:.2f}s "
          f"(20 emails in {elapsed:.1f}s, {calls} AI calls)")  # fmt: skip
    assert waited < 5 + 2.0
    assert calls >= 40  # each was tried again before its deadline


@pytest.mark.integration
@pytest.mark.slow
def test_end_to_end_with_the_defaults_and_the_ai_failing_the_circuit_sends_them_plain(
    herald_env, herald_db, openai_server, smtp_server, tmp_path
):
    waited, elapsed, calls = run_outage(
        herald_env, herald_db, openai_server, smtp_server, tmp_path,
        OUTAGE_TOML.format(ai="", breakers=""), "defaults",
    )  # fmt: skip
    print(f"\nAI answering 500, the defaults (max_delay_seconds = 60): longest wait "
          f"{waited:.2f}s (20 emails in {elapsed:.1f}s, {calls} AI calls)")  # fmt: skip
    assert waited < 60 + 2.0


# -- herald demo with a key and an AI that cannot be reached ----------------------------------


@pytest.mark.slow
def test_herald_demo_with_an_unreachable_ai_finishes_every_email_unavailable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))}
    env.update(OPENAI_API_KEY="sk-x", OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1")
    exe = shutil.which("herald")
    command = [exe] if exe else [sys.executable, "-m", "herald.cli.main"]
    out = tmp_path / "out"
    started = time.monotonic()
    done = subprocess.run(
        [*command, "demo", "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    print(f"\nherald demo, AI unreachable: {took:.1f}s")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    emails = [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in out.glob("**/*.eml")
    ]
    member_emails = [m for m in emails if "membership@" in str(m["To"])]
    assert member_emails, sorted(p.name for p in out.iterdir())
    for message in member_emails:
        plain = message.get_body(("plain",))
        assert plain is not None, message["Subject"]
        assert UNAVAILABLE in plain.get_content(), message["Subject"]
    assert took < 60
