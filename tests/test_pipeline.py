"""The whole pipeline on Dramatiq's StubBroker: a real PostgreSQL, fake mailer and model."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from herald.errors import PermanentError, TransientError
from herald.ledger import JobRef
from tests.helpers import sql


def deliveries(url):
    return sql(
        url, "SELECT recipient, status, attempts, ambiguous FROM herald.deliveries ORDER BY id"
    )


def jobs(url, actor=None):
    where = "WHERE actor = %s" if actor else ""
    return sql(url, f"SELECT * FROM herald.jobs {where} ORDER BY id", (actor,) if actor else None)


def test_an_insert_on_an_ai_route_is_summarised_and_emailed(herald_db, stub_pipeline):
    sql(herald_db, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org')")
    stub_pipeline.orchestrate()
    [sent] = stub_pipeline.mailer.sent
    assert sent.to_addrs == ("ops@example.com",)
    body = sent.message.get_body(("plain",)).get_content()
    assert stub_pipeline.summariser.calls and "Summary" in body or "summary" in body.lower()
    assert sent.message["X-Herald-Change-Id"] == "1"
    assert [j["status"] for j in jobs(herald_db)] == ["complete", "complete"]


def test_the_model_never_sees_the_pii_fields_or_addresses(herald_db, stub_pipeline):
    sql(
        herald_db,
        "INSERT INTO members (first_name, last_name, email, phone, note) VALUES "
        "('Ann', 'Lee', 'ann@example.org', '+44 20 7946 0958', "
        "'call me on 555-123-4567 or mail ann.lee@corp.example')",
    )
    stub_pipeline.orchestrate()
    seen = repr(stub_pipeline.summariser.calls)
    for secret in ("Ann", "Lee", "ann@example.org", "7946", "555-123-4567", "ann.lee@corp.example"):
        assert secret not in seen


def test_an_update_on_a_two_recipient_route_sends_one_email_to_each(herald_db, stub_pipeline):
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 10)")
    sql(herald_db, "UPDATE classes SET seats = 12")
    stub_pipeline.orchestrate()
    assert sorted(s.to_addrs[0] for s in stub_pipeline.mailer.sent) == [
        "a@example.com",
        "b@example.com",
    ]
    assert [d["status"] for d in deliveries(herald_db)] == ["sent", "sent"]


def test_a_message_seen_twice_sends_nothing_the_second_time(herald_db, stub_pipeline):
    from actors.publish import message_for
    from herald.ledger import JobRef

    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 12")
    stub_pipeline.orchestrate()
    for job in jobs(herald_db, "send_email"):
        ref = JobRef(job["id"], str(job["message_id"]), job["actor"], job["queue"], job["priority"])
        stub_pipeline.broker.enqueue(message_for(ref))
    stub_pipeline.drain()
    assert len(stub_pipeline.mailer.sent) == 2


def test_a_canceled_job_does_nothing_when_its_message_arrives(herald_db, stub_pipeline):
    from actors.publish import message_for

    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 12")
    from orchestrator.orchestrate import run_orchestrator

    published: list[JobRef] = []

    def publish(refs: Sequence[JobRef]) -> list[int]:
        published.extend(refs)
        return [r.id for r in refs]

    run_orchestrator(stub_pipeline.pool, stub_pipeline.settings, publish)
    sql(herald_db, "UPDATE herald.jobs SET status = 'canceled'")
    for ref in published:
        stub_pipeline.broker.enqueue(message_for(ref))
    stub_pipeline.drain()
    assert stub_pipeline.mailer.sent == []
    assert {j["status"] for j in jobs(herald_db)} == {"canceled"}


def test_a_transient_smtp_error_is_retried_and_the_email_sent_once(herald_db, stub_pipeline):
    stub_pipeline.mailer.fail_next(TransientError("SMTP 451: try later"), times=2)
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 12 WHERE id = 1")
    stub_pipeline.orchestrate()
    assert len(stub_pipeline.mailer.sent) == 2
    assert sum(j["attempts"] for j in jobs(herald_db, "send_email")) == 4  # 2 failed, 2 sent
    assert {j["status"] for j in jobs(herald_db)} == {"complete"}


def test_a_permanent_smtp_error_fails_the_job_with_the_servers_reason(herald_db, stub_pipeline):
    stub_pipeline.mailer.fail_next(PermanentError("SMTP 550: no such user"), times=1)
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 12 WHERE id = 1")
    stub_pipeline.orchestrate()
    failed = [j for j in jobs(herald_db, "send_email") if j["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["attempts"] == 1
    assert "SMTP 550: no such user" in failed[0]["last_error"]
    assert len(stub_pipeline.mailer.sent) == 1  # the other recipient still got theirs


def test_exhausted_retries_leave_the_job_failed_with_the_reason(herald_db, stub_pipeline):
    send_email = stub_pipeline.actors.send_email

    send_email.options["max_retries"] = 2
    stub_pipeline.mailer.fail_next(TransientError("SMTP 451: greylisted"), times=100)
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 12 WHERE id = 1")
    stub_pipeline.orchestrate()
    rows = jobs(herald_db, "send_email")
    assert {(j["status"], j["attempts"]) for j in rows} == {("failed", 3)}
    assert all("greylisted" in j["last_error"] for j in rows)


def test_when_the_ai_fails_for_good_the_email_goes_out_marked_summary_unavailable(
    herald_db, stub_pipeline
):
    enrich = stub_pipeline.actors.enrich

    enrich.options["max_retries"] = 1
    stub_pipeline.summariser.fail_next(TransientError("AI 500"), times=10)
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('Ann')")
    stub_pipeline.orchestrate()
    [sent] = stub_pipeline.mailer.sent
    assert "Summary unavailable" in sent.message.get_body(("plain",)).get_content()
    assert sql(herald_db, "SELECT status FROM herald.summaries")[0]["status"] == "unavailable"


def test_a_value_the_template_cannot_render_fails_that_job_and_the_rest_are_sent(
    herald_db, stub_pipeline, monkeypatch
):
    import herald.email.deliver as deliver

    real = deliver.render_notification

    def render(changes, **kw):
        if any("poison" in str(c.new_row) for c in changes):
            raise PermanentError("cannot render notification: poison value")
        return real(changes, **kw)

    monkeypatch.setattr(deliver, "render_notification", render)
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a'), ('b')")
    sql(herald_db, "UPDATE classes SET title = 'poison' WHERE id = 1")
    sql(herald_db, "UPDATE classes SET title = 'fine' WHERE id = 2")
    stub_pipeline.orchestrate()
    statuses = sorted(j["status"] for j in jobs(herald_db, "send_email"))
    assert statuses == ["complete", "complete", "failed", "failed"]
    assert len(stub_pipeline.mailer.sent) == 2


@pytest.mark.parametrize("args", [("not-an-int",), (1, 2), ()])
def test_a_malformed_message_is_rejected_and_the_worker_keeps_running(
    herald_db, stub_pipeline, args
):
    import dramatiq

    stub_pipeline.broker.enqueue(dramatiq.Message("email", "send_email", args, {}, {}))
    stub_pipeline.broker.join("email", fail_fast=False)
    assert stub_pipeline.broker.dead_letters
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 1")
    stub_pipeline.orchestrate()
    assert len(stub_pipeline.mailer.sent) == 2


def test_a_subject_template_that_fails_on_a_change_falls_back_and_says_why_in_the_ledger(
    herald_db, stub_pipeline
):
    from tests.helpers import ROUTES, make_settings

    routes = {**ROUTES, "routes": [{**r, "subject": "{{ row.title }} ({{ 1 // row.seats }})"}
                                   for r in ROUTES["routes"]]}  # fmt: skip
    stub_pipeline.use(settings=make_settings(herald_db, routes))
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 4)")
    sql(herald_db, "UPDATE classes SET seats = 0")  # 1 // 0 fails on this change only
    stub_pipeline.orchestrate()
    subjects = sorted(m.message["Subject"] for m in stub_pipeline.mailer.sent)
    assert subjects == ['Classes: "Yoga" updated (seats)'] * 2
    notes = {j["last_error"] for j in jobs(herald_db, "send_email")}
    assert len(notes) == 1 and "subject template failed" in notes.pop()
    assert {j["status"] for j in jobs(herald_db, "send_email")} == {"complete"}


def test_an_email_lists_the_columns_in_the_tables_order(herald_db, stub_pipeline):
    sql(herald_db, "ALTER TABLE members ADD COLUMN zeta text, ADD COLUMN alpha text")
    sql(herald_db, "INSERT INTO members (first_name, zeta, alpha) VALUES ('Ann', 'z', 'a')")
    stub_pipeline.orchestrate()
    [sent] = stub_pipeline.mailer.sent
    text = sent.message.get_body(("plain",)).get_content()
    positions = [text.find(label) for label in ("First name", "Zeta", "Alpha")]
    assert -1 not in positions and positions == sorted(positions), text
