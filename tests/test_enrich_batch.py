"""Enrich batches: many enrich jobs in one message, their AI calls in flight together on the
worker process's event loop, each job still failing, retrying and waiting on its own.

Publishing is tested without a broker (`messages_for`); the batch on the StubBroker with a
real PostgreSQL and the real asynchronous summariser against the tests' OpenAI-compatible
server (tests/services/openai_server.py); test_faults.py runs enrich batches on RabbitMQ
with the worker killed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence

import dramatiq
import pytest

from herald.email.deliver import SUMMARY_UNAVAILABLE
from herald.enrich.ai import OpenAISummariser
from herald.enrich.ai_async import async_summariser_for
from herald.enrich.batch import summarise_batch
from herald.enrich.loop import AILoop
from herald.ledger import JobRef
from tests.helpers import ROUTES, RecordingPublisher, make_settings, sql

UNAVAILABLE = SUMMARY_UNAVAILABLE.split(":")[0]  # "Summary unavailable"
ALIAS = re.compile(r"FIRST_NAME_[0-9]{1,4}")


def ref(job_id: int, actor: str = "enrich", priority: int = 5) -> JobRef:
    queue = "email" if actor == "send_email" else "enrich"
    return JobRef(job_id, f"00000000-0000-0000-0000-{job_id:012d}", actor, queue, priority)


def batch_settings(url: str, *, on_ai_failure: str = "send", retries: int = 5, **ai):
    """The members route (one recipient, AI on) with `[ai]` options."""
    routes = [{**r, "on_ai_failure": on_ai_failure} for r in ROUTES["routes"]]
    raw = {**ROUTES, "ai": {**ROUTES["ai"], "timeout_seconds": 5, **ai}, "routes": routes,
           "retries": {"enrich": {"max_retries": retries}}}  # fmt: skip
    return make_settings(url, raw)


def real_summariser(openai_server) -> OpenAISummariser:
    return OpenAISummariser(
        model="test-model", api_key="sk-test-key", base_url=openai_server.base_url, timeout=5
    )


@pytest.fixture
def ai_pipeline(stub_pipeline, herald_db, openai_server):
    """The stub pipeline with the real summariser, answering "Summary: <alias> joined."."""
    openai_server.reply = lambda body: f"Summary: {first_alias(body)} joined."
    stub_pipeline.use(settings=batch_settings(herald_db), summariser=real_summariser(openai_server))
    return stub_pipeline


def first_alias(body) -> str:
    found = ALIAS.search(body["messages"][1]["content"])
    return found.group(0) if found else "someone"


def write_enrich_jobs(pipeline, url: str, members: int) -> list[JobRef]:
    """`members` new members: as many enrich jobs, written but not published."""
    from orchestrator.orchestrate import run_orchestrator

    sql(url, "INSERT INTO members (first_name, email) SELECT 'Ann' || i, 'ann' || i || "
             "'@example.org' FROM generate_series(1, %s) AS i", (members,))  # fmt: skip
    publisher = RecordingPublisher()
    run_orchestrator(pipeline.pool, pipeline.settings, publisher)
    return publisher.refs


def send_as_one_batch(pipeline, refs: Sequence[JobRef]) -> None:
    from actors.publish import messages_for

    [(message, _)] = messages_for(refs, len(refs))
    assert message.actor_name == "enrich_batch"
    pipeline.broker.enqueue(message)
    pipeline.drain()


def enrich_jobs(url):
    return sql(url, "SELECT * FROM herald.jobs WHERE actor = 'enrich' ORDER BY id")


def bodies_by_first_name(pipeline, url) -> dict[str, str]:
    """Each email's plain body, by the first name of the member it reports."""
    names = {str(r["id"]): r["name"] for r in sql(
        url, "SELECT id, new_row->>'first_name' AS name FROM herald.change_log")}  # fmt: skip
    return {
        names[s.message["X-Herald-Change-Id"]]: s.message.get_body(("plain",)).get_content()
        for s in pipeline.mailer.sent
    }


@pytest.fixture
def ai_loop(stub_pipeline) -> Iterator[AILoop]:
    """A loop for the service alone, on the pipeline's summariser."""
    loop = AILoop(lambda: async_summariser_for(stub_pipeline.summariser), max_concurrency=8)
    yield loop
    loop.close()


# -- publishing ------------------------------------------------------------------------------


def test_enrich_jobs_of_one_priority_share_a_message_up_to_the_ai_batch_size():
    from actors.publish import messages_for

    refs = [ref(i) for i in range(1, 26)] + [ref(100 + i, priority=9) for i in range(2)]
    refs += [ref(200 + i, actor="send_email") for i in range(3)]
    units = messages_for(refs, {"enrich": 10, "send_email": 20})
    shapes = [(m.actor_name, m.options["broker_priority"], len(ids)) for m, ids in units]
    assert shapes == [
        ("enrich_batch", 5, 10),
        ("enrich_batch", 5, 10),
        ("enrich_batch", 5, 5),
        ("enrich_batch", 9, 2),
        ("send_emails", 5, 3),
    ]
    batch, ids = units[0]
    assert batch.queue_name == "enrich" and batch.args == (ids,) and ids == list(range(1, 11))
    assert batch.encode().count(b"@") == 0 and batch.kwargs == {}


def test_a_lone_enrich_job_and_a_batch_size_of_one_keep_one_message_per_job():
    from actors.publish import messages_for

    [(message, ids)] = messages_for([ref(7)], {"enrich": 20})
    assert (message.actor_name, message.args, ids) == ("enrich", (7,), [7])
    assert message.message_id == ref(7).message_id
    units = messages_for([ref(1), ref(2)], {"enrich": 1})
    assert [(m.actor_name, m.args) for m, _ in units] == [("enrich", (1,)), ("enrich", (2,))]


def test_the_publisher_batches_enrich_jobs_by_ai_batch_size(herald_db, stub_pipeline):
    stub_pipeline.use(settings=batch_settings(herald_db, batch_size=4))
    assert stub_pipeline.app is not None
    assert stub_pipeline.app.publisher.batch_sizes == {"send_email": 20, "enrich": 4}


# -- the batch on the StubBroker, the real asynchronous summariser ----------------------------


def test_a_batch_summarises_each_notification_once_and_every_email_carries_its_summary(
    herald_db, ai_pipeline, openai_server
):
    refs = write_enrich_jobs(ai_pipeline, herald_db, members=12)
    send_as_one_batch(ai_pipeline, refs)
    assert len(openai_server.requests) == 12
    bodies = bodies_by_first_name(ai_pipeline, herald_db)
    assert len(bodies) == 12
    for name, body in bodies.items():
        assert f"Summary: {name} joined." in body  # its own summary, the alias put back
    assert {(j["status"], j["attempts"]) for j in enrich_jobs(herald_db)} == {("complete", 1)}
    summaries = sql(herald_db, "SELECT status, count(*) AS n FROM herald.summaries GROUP BY 1")
    assert summaries == [{"status": "ok", "n": 12}]


def test_a_batch_writes_the_email_jobs_that_one_enrich_job_writes_alone(herald_db, ai_pipeline):
    from actors.publish import messages_for
    from herald.ledger import ACTOR_QUEUES, PRIORITIES, NewJob

    alone, *batch = write_enrich_jobs(ai_pipeline, herald_db, members=3)
    [(message, _)] = messages_for([alone], 1)
    ai_pipeline.broker.enqueue(message)
    send_as_one_batch(ai_pipeline, batch)
    emails = sql(herald_db, """
        SELECT e.*, n.priority AS route_priority, x.change_id AS enrich_change_id
          FROM herald.jobs e JOIN herald.notifications n ON n.id = e.notification_id
          JOIN herald.jobs x ON x.notification_id = e.notification_id AND x.actor = 'enrich'
         WHERE e.actor = 'send_email' ORDER BY e.id""")  # fmt: skip
    assert len(emails) == 3 and len({e["message_id"] for e in emails}) == 3
    for email in emails:
        expected = NewJob("send_email", email["notification_id"], email["enrich_change_id"],
                          email["recipient"], email["route_priority"])  # fmt: skip
        assert (email["queue"], email["unique_key"], email["priority"], email["change_id"]) == (
            ACTOR_QUEUES["send_email"], expected.unique_key, PRIORITIES[expected.priority],
            expected.change_id,
        )  # fmt: skip
    assert len(ai_pipeline.mailer.sent) == 3


def test_the_orchestrator_publishes_enrich_batches_and_their_emails_leave_as_email_batches(
    herald_db, ai_pipeline
):
    enqueued: list[dramatiq.Message] = []
    real_enqueue = ai_pipeline.broker.enqueue

    def spy(message, *, delay=None):
        enqueued.append(message)
        return real_enqueue(message, delay=delay)

    ai_pipeline.broker.enqueue = spy
    try:
        sql(herald_db, "INSERT INTO members (first_name) SELECT 'm' FROM generate_series(1, 30)")
        ai_pipeline.orchestrate()
    finally:
        del ai_pipeline.broker.enqueue
    shapes = [(m.actor_name, len(m.args[0])) for m in enqueued if m.actor_name != "orchestrate"]
    assert sorted(shapes) == [("enrich_batch", 10), ("enrich_batch", 20), ("send_emails", 10),
                              ("send_emails", 20)]  # fmt: skip
    assert len(ai_pipeline.mailer.sent) == 30


def test_ai_calls_in_flight_are_bounded_by_max_concurrency_not_by_worker_threads(
    herald_db, stub_pipeline, openai_server
):
    in_flight, most, lock = [0], [0], threading.Lock()

    def slow_reply(body) -> str:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.3)
        with lock:
            in_flight[0] -= 1
        return "Summary: joined."

    openai_server.reply = slow_reply
    settings = batch_settings(herald_db, max_concurrency=5)
    stub_pipeline.use(settings=settings, summariser=real_summariser(openai_server))
    refs = write_enrich_jobs(stub_pipeline, herald_db, members=20)
    started = time.monotonic()
    send_as_one_batch(stub_pipeline, refs)
    elapsed = time.monotonic() - started
    print(f"\n20 calls of 0.3 s, max_concurrency 5, 2 worker threads: {most[0]} in flight at "
          f"most, {elapsed:.1f}s")  # fmt: skip
    assert most[0] == 5  # more than the pipeline's 2 worker threads, never more than 5
    assert len(stub_pipeline.mailer.sent) == 20


def test_a_transient_failure_retries_that_job_alone_and_the_rest_are_handed_off(
    herald_db, ai_pipeline, openai_server
):
    delayed: list[dramatiq.Message] = []  # the retry, sent with its delay
    real_enqueue = ai_pipeline.broker.enqueue

    def spy(message, *, delay=None):
        if delay:
            delayed.append(message)
        return real_enqueue(message, delay=delay)

    refs = write_enrich_jobs(ai_pipeline, herald_db, members=5)
    openai_server.fail_next(1, status=500)
    ai_pipeline.broker.enqueue = spy
    try:
        send_as_one_batch(ai_pipeline, refs)
    finally:
        del ai_pipeline.broker.enqueue
    jobs = enrich_jobs(herald_db)
    retried = [j for j in jobs if j["attempts"] == 2]
    assert len(retried) == 1 and "AI server error (HTTP 500)" in retried[0]["last_error"]
    assert {j["status"] for j in jobs} == {"complete"}
    alone = [m for m in delayed if m.actor_name == "enrich"]
    assert [m.args for m in alone] == [(retried[0]["id"],)] and alone[0].options["retries"] == 1
    assert len(openai_server.requests) == 6
    assert all(UNAVAILABLE not in body for body in bodies_by_first_name(ai_pipeline, herald_db)
               .values())  # fmt: skip


def test_a_permanent_failure_goes_without_a_summary_on_a_send_route_and_the_batch_goes_on(
    herald_db, ai_pipeline, openai_server
):
    refs = write_enrich_jobs(ai_pipeline, herald_db, members=4)
    openai_server.fail_next(1, status=400)
    send_as_one_batch(ai_pipeline, refs)
    bodies = list(bodies_by_first_name(ai_pipeline, herald_db).values())
    assert len(bodies) == 4 and sum(UNAVAILABLE in b for b in bodies) == 1
    assert {(j["status"], j["attempts"]) for j in enrich_jobs(herald_db)} == {("complete", 1)}
    assert len(openai_server.requests) == 4


def test_a_permanent_failure_fails_that_job_on_a_hold_route(
    herald_db, stub_pipeline, openai_server
):
    stub_pipeline.use(settings=batch_settings(herald_db, on_ai_failure="hold"),
                      summariser=real_summariser(openai_server))  # fmt: skip
    refs = write_enrich_jobs(stub_pipeline, herald_db, members=3)
    openai_server.fail_next(1, status=401)
    send_as_one_batch(stub_pipeline, refs)
    jobs = enrich_jobs(herald_db)
    assert sorted(j["status"] for j in jobs) == ["complete", "complete", "failed"]
    [failed] = [j for j in jobs if j["status"] == "failed"]
    assert "AI refused our credentials (HTTP 401)" in failed["last_error"]
    assert len(stub_pipeline.mailer.sent) == 2


def test_with_no_retries_a_transient_failure_is_the_last_attempt(
    herald_db, stub_pipeline, openai_server
):
    stub_pipeline.use(settings=batch_settings(herald_db, retries=0),
                      summariser=real_summariser(openai_server))  # fmt: skip
    refs = write_enrich_jobs(stub_pipeline, herald_db, members=3)
    openai_server.fail_next(1, status=503)
    send_as_one_batch(stub_pipeline, refs)
    bodies = [s.message.get_body(("plain",)).get_content() for s in stub_pipeline.mailer.sent]
    assert len(bodies) == 3 and sum(UNAVAILABLE in b for b in bodies) == 1
    assert len(openai_server.requests) == 3


# -- the service: the breaker, the deadline, the time budget ----------------------------------


def open_the_ai_circuit(url: str) -> None:
    sql(
        url,
        "UPDATE herald.circuit_breakers SET state = 'open', consecutive_failures = 5, "
        "opened_at = now(), next_probe_at = now() + interval '30 s', last_error = 'AI 500' "
        "WHERE breaker = 'ai'",
    )


def test_with_the_ai_circuit_open_the_first_job_is_deferred_and_the_rest_run_alone(
    herald_db, stub_pipeline, openai_server, ai_loop
):
    stub_pipeline.use(settings=batch_settings(herald_db, on_ai_failure="hold"),
                      summariser=real_summariser(openai_server))  # fmt: skip
    refs = write_enrich_jobs(stub_pipeline, herald_db, members=4)
    open_the_ai_circuit(herald_db)
    rt = stub_pipeline
    report = summarise_batch(rt.pool, rt.settings, ai_loop, [r.id for r in refs], budget_seconds=30)
    assert [d.job_id for d in report.deferred] == [refs[0].id]
    assert report.hand_back_alone and [r.id for r in report.handed_back] == [r.id for r in refs[1:]]
    assert openai_server.requests == [] and report.handed_off == []
    jobs = enrich_jobs(herald_db)
    assert [(j["status"], j["attempts"], j["deferrals"]) for j in jobs] == [("pending", 0, 1)] + [
        ("pending", 0, 0)
    ] * 3
    assert jobs[0]["last_error"].startswith("deferred: ai circuit open")


def test_with_the_ai_circuit_open_a_send_routes_first_email_goes_plain_at_once(
    herald_db, ai_pipeline, openai_server, ai_loop
):
    refs = write_enrich_jobs(ai_pipeline, herald_db, members=3)
    open_the_ai_circuit(herald_db)
    rt = ai_pipeline
    report = summarise_batch(rt.pool, rt.settings, ai_loop, [r.id for r in refs], budget_seconds=30)
    assert [(h.job_id, h.status) for h in report.handed_off] == [(refs[0].id, "unavailable")]
    assert len(report.email_jobs) == 1 and report.hand_back_alone
    assert openai_server.requests == []


def test_a_notification_past_its_deadline_goes_out_without_asking_the_model(
    herald_db, ai_pipeline, openai_server, ai_loop
):
    refs = write_enrich_jobs(ai_pipeline, herald_db, members=3)
    # One has been due for 56 s of its 60: no call of up to 5 s (timeout_seconds) ends in
    # time, so its model is not asked; the others are.
    sql(herald_db, "UPDATE herald.notifications SET created_at = created_at - interval '56 s' "
                   "WHERE id = (SELECT min(id) FROM herald.notifications)")  # fmt: skip
    rt = ai_pipeline
    report = summarise_batch(rt.pool, rt.settings, ai_loop, [r.id for r in refs], budget_seconds=30)
    assert sorted(h.status for h in report.handed_off) == ["ok", "ok", "unavailable"]
    assert len(openai_server.requests) == 2
    [late] = [j for j in enrich_jobs(herald_db) if j["last_error"]]
    assert "no summary within [ai] max_delay_seconds (60s)" in late["last_error"]


def test_a_failure_too_close_to_the_deadline_sends_the_email_instead_of_retrying(
    herald_db, ai_pipeline, openai_server, ai_loop
):
    refs = write_enrich_jobs(ai_pipeline, herald_db, members=2)
    # 54 s of 60 gone: one call of 5 s fits, a retry after it does not.
    sql(herald_db, "UPDATE herald.notifications SET created_at = created_at - interval '54 s'")
    openai_server.fail_for(30, status=500)
    rt = ai_pipeline
    report = summarise_batch(rt.pool, rt.settings, ai_loop, [r.id for r in refs], budget_seconds=30)
    assert [h.status for h in report.handed_off] == ["unavailable", "unavailable"]
    assert report.retry == [] and len(openai_server.requests) == 2


def test_calls_not_started_when_the_time_budget_is_spent_are_handed_back_as_a_batch(
    herald_db, stub_pipeline, openai_server
):
    later = [0.0]  # the first answer moves the clock past the budget

    def reply(body) -> str:
        later[0] = 1000.0
        return "Summary: joined."

    openai_server.reply = reply
    stub_pipeline.use(settings=batch_settings(herald_db),
                      summariser=real_summariser(openai_server))  # fmt: skip
    refs = write_enrich_jobs(stub_pipeline, herald_db, members=4)
    loop = AILoop(lambda: async_summariser_for(stub_pipeline.summariser), max_concurrency=1)
    rt = stub_pipeline
    try:
        report = summarise_batch(
            rt.pool, rt.settings, loop, [r.id for r in refs],
            budget_seconds=10, clock=lambda: time.monotonic() + later[0],
        )  # fmt: skip
    finally:
        loop.close()
    assert [h.job_id for h in report.handed_off] == [refs[0].id]
    assert [r.id for r in report.handed_back] == [r.id for r in refs[1:]]
    assert not report.hand_back_alone  # published again as a batch
    jobs = enrich_jobs(herald_db)
    assert (jobs[0]["status"], jobs[0]["attempts"]) == ("complete", 1)
    for job in jobs[1:]:
        assert (job["status"], job["attempts"], job["published_at"]) == ("pending", 0, None)
        assert "time budget" in job["last_error"]


def test_calls_that_find_no_free_slot_within_the_time_budget_are_handed_back(
    herald_db, stub_pipeline, openai_server
):
    def slow(body) -> str:
        time.sleep(1.0)
        return "Summary: joined."

    openai_server.reply = slow
    stub_pipeline.use(settings=batch_settings(herald_db),
                      summariser=real_summariser(openai_server))  # fmt: skip
    refs = write_enrich_jobs(stub_pipeline, herald_db, members=3)
    loop = AILoop(lambda: async_summariser_for(stub_pipeline.summariser), max_concurrency=1)
    rt = stub_pipeline
    try:
        report = summarise_batch(rt.pool, rt.settings, loop, [r.id for r in refs],
                                 budget_seconds=0.3)  # fmt: skip
    finally:
        loop.close()
    assert len(report.handed_off) == 1 and len(openai_server.requests) == 1
    assert len(report.handed_back) == 2 and not report.hand_back_alone


def test_a_batch_seen_twice_asks_the_model_once(herald_db, ai_pipeline, openai_server):
    refs = write_enrich_jobs(ai_pipeline, herald_db, members=3)
    send_as_one_batch(ai_pipeline, refs)
    send_as_one_batch(ai_pipeline, refs)
    assert len(openai_server.requests) == 3 and len(ai_pipeline.mailer.sent) == 3
    assert {j["attempts"] for j in enrich_jobs(herald_db)} == {1}


@pytest.mark.parametrize("args", [("not-a-list",), ([],), ([1, "2"],), ([1], [2])])
def test_a_malformed_batch_is_dead_lettered_and_the_worker_keeps_running(
    herald_db, ai_pipeline, args
):
    ai_pipeline.broker.enqueue(dramatiq.Message("enrich", "enrich_batch", args, {}, {}))
    ai_pipeline.broker.join("enrich", fail_fast=False)
    assert ai_pipeline.broker.dead_letters
    send_as_one_batch(ai_pipeline, write_enrich_jobs(ai_pipeline, herald_db, members=2))
    assert len(ai_pipeline.mailer.sent) == 2


def test_each_job_of_a_batch_is_counted_as_an_enrich_job(herald_db, ai_pipeline, openai_server):
    from prometheus_client import CollectorRegistry

    from monitoring import prometheus
    from monitoring.metrics import create_worker_metrics

    registry = CollectorRegistry()
    saved = prometheus._active
    prometheus._activate(create_worker_metrics(registry))
    try:
        refs = write_enrich_jobs(ai_pipeline, herald_db, members=4)
        openai_server.fail_next(1, status=500)
        send_as_one_batch(ai_pipeline, refs)
    finally:
        prometheus._active = saved
    labels = {"actor": "enrich", "queue": "enrich"}
    # Three completed in the batch, one retried (its lone attempt is the middleware's).
    assert registry.get_sample_value("herald_jobs_completed_total", labels) == 3
    assert registry.get_sample_value("herald_jobs_retried_total", labels) == 1
    batch_labels = {"actor": "enrich_batch", "queue": "enrich"}
    assert not registry.get_sample_value("herald_jobs_completed_total", batch_labels)
    assert registry.get_sample_value("herald_ai_tokens_total", {"kind": "completion"}) == 4 * 3


def test_the_event_loop_starts_with_the_first_batch_and_stops_with_the_worker(
    herald_db, ai_pipeline
):
    def loop_threads() -> int:
        return sum(t.name == "herald-ai-loop" for t in threading.enumerate())

    before = loop_threads()
    send_as_one_batch(ai_pipeline, write_enrich_jobs(ai_pipeline, herald_db, members=2))
    assert loop_threads() == before + 1
    ai_pipeline.stop()
    assert loop_threads() == before
