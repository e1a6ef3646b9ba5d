"""Email batches: many email jobs in one message, each job still failing and retrying alone.

Publishing is tested without a broker (`messages_for`); the batch itself on the StubBroker
with a real PostgreSQL and the fake mailer (the suites on RabbitMQ and a real SMTP server,
test_faults.py and test_monitoring_live.py, run with batches too: they are the default).
"""

from __future__ import annotations

from collections.abc import Sequence

import dramatiq
import pytest

from herald.errors import PermanentError, TransientError
from herald.ledger import JobRef
from tests.helpers import RecordingPublisher, sql


def ref(job_id: int, actor: str = "send_email", priority: int = 5) -> JobRef:
    queue = "email" if actor == "send_email" else "enrich"
    return JobRef(job_id, f"00000000-0000-0000-0000-{job_id:012d}", actor, queue, priority)


def email_jobs(url):
    return sql(url, "SELECT * FROM herald.jobs WHERE actor = 'send_email' ORDER BY id")


def write_email_jobs(stub_pipeline, herald_db, classes: int) -> list[JobRef]:
    """`classes` updated rows on the two-recipient route: 2 x classes email jobs, written by
    the orchestrator but not published (the test publishes them as it likes)."""
    from orchestrator.orchestrate import run_orchestrator

    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' FROM generate_series(1, %s)", (classes,))
    sql(herald_db, "UPDATE classes SET seats = 12")
    publisher = RecordingPublisher()
    run_orchestrator(stub_pipeline.pool, stub_pipeline.settings, publisher)
    return publisher.refs


def send_as_one_batch(stub_pipeline, refs: Sequence[JobRef]) -> None:
    from actors.publish import messages_for

    [(message, _)] = messages_for(refs, len(refs))
    assert message.actor_name == "send_emails"
    stub_pipeline.broker.enqueue(message)
    stub_pipeline.drain()


# -- publishing ------------------------------------------------------------------------------


def test_email_jobs_of_one_priority_share_a_message_up_to_the_batch_size():
    from actors.publish import messages_for

    refs = [ref(i) for i in range(1, 46)] + [ref(100 + i, priority=9) for i in range(3)]
    refs.insert(5, ref(500, actor="enrich"))
    units = messages_for(refs, {"send_email": 20})  # enrich jobs alone (test_enrich_batch.py)
    shapes = [(m.actor_name, m.options["broker_priority"], len(ids)) for m, ids in units]
    assert shapes == [
        ("enrich", 5, 1),
        ("send_emails", 5, 20),
        ("send_emails", 5, 20),
        ("send_emails", 5, 5),
        ("send_emails", 9, 3),
    ]
    batch, ids = units[1]
    assert batch.args == (ids,) and ids == list(range(1, 21))
    assert sorted(i for _, ids in units for i in ids) == sorted(r.id for r in refs)


def test_a_lone_email_job_and_a_batch_size_of_one_keep_one_message_per_job():
    from actors.publish import messages_for

    [(message, ids)] = messages_for([ref(7)], 20)
    assert (message.actor_name, message.args, ids) == ("send_email", (7,), [7])
    assert message.message_id == ref(7).message_id
    units = messages_for([ref(1), ref(2), ref(3)], 1)
    assert [(m.actor_name, m.args) for m, _ in units] == [("send_email", (i,)) for i in (1, 2, 3)]


def test_a_batch_carries_job_ids_and_nothing_else():
    from actors.publish import messages_for

    [(message, _)] = messages_for([ref(1), ref(2)], 20)
    assert message.encode().count(b"@") == 0
    assert message.args == ([1, 2],) and message.kwargs == {}


# -- the batch on the StubBroker -------------------------------------------------------------


def test_a_batch_sends_every_email_once_and_completes_every_job(herald_db, stub_pipeline):
    refs = write_email_jobs(stub_pipeline, herald_db, classes=6)
    send_as_one_batch(stub_pipeline, refs)
    assert len(stub_pipeline.mailer.sent) == 12
    assert {(j["status"], j["attempts"]) for j in email_jobs(herald_db)} == {("complete", 1)}
    deliveries = sql(herald_db, "SELECT status, ambiguous FROM herald.deliveries")
    assert len(deliveries) == 12 and {(d["status"], d["ambiguous"]) for d in deliveries} == {
        ("sent", False)
    }
    message_ids = {s.message["Message-ID"] for s in stub_pipeline.mailer.sent}
    assert len(message_ids) == 12


def test_the_orchestrator_publishes_email_jobs_in_batches(herald_db, stub_pipeline):
    enqueued: list[dramatiq.Message] = []
    real_enqueue = stub_pipeline.broker.enqueue

    def spy(message, *, delay=None):
        enqueued.append(message)
        return real_enqueue(message, delay=delay)

    stub_pipeline.broker.enqueue = spy
    try:
        sql(herald_db, "INSERT INTO classes (title) SELECT 'c' FROM generate_series(1, 15)")
        sql(herald_db, "UPDATE classes SET seats = 12")
        stub_pipeline.orchestrate()
    finally:
        del stub_pipeline.broker.enqueue
    batches = [m for m in enqueued if m.actor_name == "send_emails"]
    assert [len(m.args[0]) for m in batches] == [20, 10]
    assert not [m for m in enqueued if m.actor_name == "send_email"]
    assert len(stub_pipeline.mailer.sent) == 30


def test_a_transient_failure_retries_that_job_alone_and_the_rest_are_sent(herald_db, stub_pipeline):
    refs = write_email_jobs(stub_pipeline, herald_db, classes=3)
    stub_pipeline.mailer.fail_next(TransientError("SMTP 451: try later"), times=1)
    send_as_one_batch(stub_pipeline, refs)
    jobs = email_jobs(herald_db)
    assert len(stub_pipeline.mailer.sent) == 6
    assert [(j["status"], j["attempts"]) for j in jobs] == [("complete", 2)] + [("complete", 1)] * 5
    assert "SMTP 451" in jobs[0]["last_error"]


def test_a_permanent_failure_fails_only_that_job_and_the_batch_goes_on(herald_db, stub_pipeline):
    refs = write_email_jobs(stub_pipeline, herald_db, classes=3)
    stub_pipeline.mailer.fail_next(PermanentError("SMTP 550: no such user"), times=1)
    send_as_one_batch(stub_pipeline, refs)
    jobs = email_jobs(herald_db)
    assert [(j["status"], j["attempts"]) for j in jobs] == [("failed", 1)] + [("complete", 1)] * 5
    assert "SMTP 550: no such user" in jobs[0]["last_error"]
    assert len(stub_pipeline.mailer.sent) == 5


def test_exhausted_retries_fail_a_batched_job_with_its_reason(herald_db, stub_pipeline):
    send_email = stub_pipeline.actors.send_email

    send_email.options["max_retries"] = 2
    refs = write_email_jobs(stub_pipeline, herald_db, classes=1)
    stub_pipeline.mailer.fail_next(TransientError("SMTP 451: greylisted"), times=100)
    send_as_one_batch(stub_pipeline, refs)
    jobs = email_jobs(herald_db)
    assert {(j["status"], j["attempts"]) for j in jobs} == {("failed", 3)}
    assert all("greylisted" in j["last_error"] for j in jobs)


def test_jobs_that_must_not_run_are_skipped_and_the_others_sent(herald_db, stub_pipeline):
    refs = write_email_jobs(stub_pipeline, herald_db, classes=2)
    sql(herald_db, "UPDATE herald.jobs SET status = 'canceled' WHERE id = %s", (refs[1].id,))
    send_as_one_batch(stub_pipeline, refs)
    statuses = [j["status"] for j in email_jobs(herald_db)]
    assert statuses == ["complete", "canceled", "complete", "complete"]
    assert len(stub_pipeline.mailer.sent) == 3


def test_a_batch_seen_twice_sends_nothing_the_second_time(herald_db, stub_pipeline):
    refs = write_email_jobs(stub_pipeline, herald_db, classes=2)
    send_as_one_batch(stub_pipeline, refs)
    send_as_one_batch(stub_pipeline, refs)
    assert len(stub_pipeline.mailer.sent) == 4
    assert {j["attempts"] for j in email_jobs(herald_db)} == {1}


@pytest.mark.parametrize("args", [("not-a-list",), ([],), ([1, "2"],), ([1], [2])])
def test_a_malformed_batch_is_dead_lettered_and_the_worker_keeps_running(
    herald_db, stub_pipeline, args
):
    stub_pipeline.broker.enqueue(dramatiq.Message("email", "send_emails", args, {}, {}))
    stub_pipeline.broker.join("email", fail_fast=False)
    assert stub_pipeline.broker.dead_letters
    refs = write_email_jobs(stub_pipeline, herald_db, classes=1)
    send_as_one_batch(stub_pipeline, refs)
    assert len(stub_pipeline.mailer.sent) == 2


# -- the service: time budget, crash, open circuit -------------------------------------------


def test_past_its_time_budget_a_batch_hands_back_the_jobs_it_has_not_tried(
    herald_db, stub_pipeline
):
    from herald.email.batch import send_batch

    refs = write_email_jobs(stub_pipeline, herald_db, classes=2)
    ticks = iter([0.0, 0.0, 99.0])  # the deadline is set, job 1 starts in time, job 2 late
    rt = stub_pipeline
    report = send_batch(rt.pool, rt.settings, rt.mailer, [r.id for r in refs],
                        budget_seconds=10, clock=lambda: next(ticks, 99.0))  # fmt: skip
    assert [s.job_id for s in report.sent] == [refs[0].id]
    assert [r.id for r in report.handed_back] == [r.id for r in refs[1:]]
    assert not report.hand_back_alone  # published again as a batch
    jobs = email_jobs(herald_db)
    assert (jobs[0]["status"], jobs[0]["attempts"]) == ("complete", 1)
    for job in jobs[1:]:
        assert (job["status"], job["attempts"], job["published_at"]) == ("pending", 0, None)
        assert "time budget" in job["last_error"]


def test_a_batch_redelivered_after_its_worker_died_resends_only_the_email_in_flight(
    herald_db, stub_pipeline
):
    from herald.email.batch import send_batch

    class Killed(BaseException):
        """Stands for the process dying in the middle of an SMTP exchange."""

    refs = write_email_jobs(stub_pipeline, herald_db, classes=2)
    ids = [r.id for r in refs]
    rt = stub_pipeline
    stub_pipeline.mailer.sent.clear()
    real_send = rt.mailer.send

    def dies_on_the_third(message, **kw):
        if rt.mailer.attempts == 2:
            rt.mailer.attempts += 1
            raise Killed
        return real_send(message, **kw)

    rt.mailer.send = dies_on_the_third
    with pytest.raises(Killed):
        send_batch(rt.pool, rt.settings, rt.mailer, ids, budget_seconds=30)
    del rt.mailer.send
    statuses = [j["status"] for j in email_jobs(herald_db)]
    assert statuses == ["complete", "complete", "running", "running"]

    report = send_batch(rt.pool, rt.settings, rt.mailer, ids, budget_seconds=30)  # redelivered
    assert set(report.not_started) == set(ids[:2])
    assert [s.outcome.ambiguous for s in report.sent] == [True, False]
    assert len(stub_pipeline.mailer.sent) == 4  # once each; the third maybe twice (ambiguous)
    assert {j["status"] for j in email_jobs(herald_db)} == {"complete"}


def test_with_the_smtp_circuit_open_the_first_job_is_deferred_and_the_rest_run_alone(
    herald_db, stub_pipeline
):
    from herald.email.batch import send_batch

    refs = write_email_jobs(stub_pipeline, herald_db, classes=2)
    sql(
        herald_db,
        "UPDATE herald.circuit_breakers SET state = 'open', consecutive_failures = 5, "
        "opened_at = now(), next_probe_at = now() + interval '30 s', last_error = 'SMTP 451' "
        "WHERE breaker = 'smtp'",
    )
    rt = stub_pipeline
    report = send_batch(rt.pool, rt.settings, rt.mailer, [r.id for r in refs], budget_seconds=30)
    assert [d.job_id for d in report.deferred] == [refs[0].id]
    assert report.hand_back_alone and [r.id for r in report.handed_back] == [r.id for r in refs[1:]]
    assert rt.mailer.attempts == 0
    jobs = email_jobs(herald_db)
    assert [(j["status"], j["attempts"], j["deferrals"]) for j in jobs] == [("pending", 0, 1)] + [
        ("pending", 0, 0)
    ] * 3
    assert jobs[0]["last_error"].startswith("deferred: smtp circuit open")


def test_each_job_of_a_batch_is_counted_as_a_send_email_job(herald_db, stub_pipeline):
    from prometheus_client import CollectorRegistry

    from herald.email.batch import send_batch
    from monitoring import prometheus
    from monitoring.metrics import create_worker_metrics

    registry = CollectorRegistry()
    metrics = create_worker_metrics(registry)
    saved = prometheus._active
    prometheus._activate(metrics)
    try:
        refs = write_email_jobs(stub_pipeline, herald_db, classes=2)
        stub_pipeline.mailer.fail_next(PermanentError("SMTP 550"), times=1)
        rt = stub_pipeline
        report = send_batch(rt.pool, rt.settings, rt.mailer, [r.id for r in refs],
                            budget_seconds=30)  # fmt: skip
        prometheus.record_batch(report)
    finally:
        prometheus._active = saved
    labels = {"actor": "send_email", "queue": "email"}
    assert registry.get_sample_value("herald_jobs_completed_total", labels) == 3
    assert registry.get_sample_value("herald_jobs_failed_total", labels) == 1
    assert registry.get_sample_value("herald_deliveries_total", {"status": "failed"}) == 1
