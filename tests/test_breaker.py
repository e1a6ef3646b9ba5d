"""Circuit breakers on SMTP and the AI: shared in PostgreSQL, deferring jobs while open."""

from __future__ import annotations

import threading
import time

import pytest

from herald.breaker import CircuitBreaker, CircuitOpen, guarded
from herald.errors import PermanentError, TransientError
from tests.helpers import ROUTES, make_settings, sql
from tests.services import wait_until
from tests.workers import Worker, orchestrate


def breaker_row(url, name="smtp"):
    [row] = sql(url, "SELECT * FROM herald.circuit_breakers WHERE breaker = %s", (name,))
    return row


def email_jobs(url):
    return sql(url, "SELECT * FROM herald.jobs WHERE actor = 'send_email' ORDER BY id")


def open_breaker(url, name="smtp", probe_in=30.0, open_for=0.0):
    sql(
        url,
        "UPDATE herald.circuit_breakers SET state = 'open', consecutive_failures = 5, "
        "opened_at = now() - make_interval(secs => %s), "
        "next_probe_at = now() + make_interval(secs => %s), last_error = 'SMTP 451' "
        "WHERE breaker = %s",
        (open_for, probe_in, name),
    )


def configure(stub_pipeline, herald_db, **sections):
    """Run the stub pipeline's actors with these herald.toml sections added."""
    settings = make_settings(herald_db, {**ROUTES, **sections})
    stub_pipeline.use(settings=settings)
    return settings


def two_class_emails(url):
    sql(url, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(url, "UPDATE classes SET seats = 12")  # one change, two recipients


# -- the breaker itself, on a real PostgreSQL ------------------------------------------------


def test_the_breaker_opens_after_n_consecutive_transient_failures(herald_db, pool):
    breaker = CircuitBreaker("smtp", failure_threshold=3, reset_seconds=30)
    for _ in range(2):
        assert breaker.admit(pool) is False
        breaker.failed(pool, "SMTP 451: try later", probe=False)
    assert breaker_row(herald_db)["state"] == "closed"
    breaker.failed(pool, "SMTP 451: try later", probe=False)
    row = breaker_row(herald_db)
    assert (row["state"], row["consecutive_failures"], row["open"]) == ("open", 3, True)
    with pytest.raises(CircuitOpen) as refused:
        breaker.admit(pool)
    assert 29 < refused.value.retry_in <= 30


def test_a_success_while_closed_ends_the_run_of_failures(herald_db, pool):
    breaker = CircuitBreaker("smtp", failure_threshold=3)
    for _ in range(2):
        breaker.failed(pool, "SMTP 451", probe=False)
    breaker.succeeded(pool, probe=False)
    for _ in range(2):
        breaker.failed(pool, "SMTP 451", probe=False)
    assert breaker_row(herald_db)["state"] == "closed"
    assert breaker_row(herald_db)["consecutive_failures"] == 2


def test_only_one_probe_per_reset_period_among_concurrent_callers(herald_db, pool):
    open_breaker(herald_db, probe_in=0)  # the reset period is over: a probe is due
    breaker = CircuitBreaker("smtp", reset_seconds=30)
    start = threading.Barrier(8)
    probes, refusals = [], []

    def caller():
        start.wait()
        try:
            probes.append(breaker.admit(pool))
        except CircuitOpen:
            refusals.append(1)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert probes == [True] and len(refusals) == 7
    assert breaker_row(herald_db)["state"] == "half_open"


def test_a_successful_probe_closes_the_breaker(herald_db, pool):
    open_breaker(herald_db, probe_in=0)
    breaker = CircuitBreaker("smtp")
    assert breaker.admit(pool) is True
    breaker.succeeded(pool, probe=True)
    row = breaker_row(herald_db)
    assert (row["state"], row["consecutive_failures"], row["opened_at"]) == ("closed", 0, None)
    assert breaker.admit(pool) is False


def test_a_failed_probe_opens_it_again_for_another_period_keeping_when_it_opened(herald_db, pool):
    open_breaker(herald_db, probe_in=0, open_for=120)
    opened_at = breaker_row(herald_db)["opened_at"]
    breaker = CircuitBreaker("smtp", reset_seconds=30)
    assert breaker.admit(pool) is True
    breaker.failed(pool, "SMTP 451 still", probe=True)
    row = breaker_row(herald_db)
    assert row["state"] == "open" and row["opened_at"] == opened_at
    with pytest.raises(CircuitOpen) as refused:
        breaker.admit(pool)
    assert refused.value.retry_in > 29 and refused.value.open_for >= 120


def test_a_permanent_error_neither_opens_nor_resets_the_breaker(herald_db, pool):
    settings = make_settings(herald_db, {**ROUTES, "breakers": {"failure_threshold": 2}})
    with pytest.raises(TransientError), guarded(pool, settings, "smtp") as call, call.made():
        raise TransientError("SMTP 451")
    for _ in range(5):
        with pytest.raises(PermanentError), guarded(pool, settings, "smtp") as call, call.made():
            raise PermanentError("SMTP 550: no such user")
    row = breaker_row(herald_db)
    assert (row["state"], row["consecutive_failures"]) == ("closed", 1)


def test_a_probe_that_ends_in_a_permanent_error_hands_the_probe_back_at_once(herald_db, pool):
    open_breaker(herald_db, probe_in=0)
    settings = make_settings(herald_db)
    with pytest.raises(PermanentError), guarded(pool, settings, "smtp") as call, call.made():
        assert call.probe
        raise PermanentError("SMTP 550: no such user")
    assert CircuitBreaker("smtp").admit(pool) is True  # the next caller probes right away


# -- the pipeline on the StubBroker ----------------------------------------------------------


def test_while_the_smtp_circuit_is_open_no_email_is_attempted_and_jobs_stay_pending(
    herald_db, stub_pipeline
):
    configure(stub_pipeline, herald_db, breakers={"reset_seconds": 0.5})
    open_breaker(herald_db, probe_in=1.5)
    two_class_emails(herald_db)
    orchestrate_actor = stub_pipeline.actors.orchestrate

    orchestrate_actor.send()

    def both_deferred():  # one read: two reads could see no job, then two undeferred ones
        jobs = email_jobs(herald_db)
        return len(jobs) == 2 and all(j["deferrals"] >= 1 for j in jobs)

    wait_until(both_deferred, timeout=10)
    jobs = email_jobs(herald_db)
    assert {j["status"] for j in jobs} == {"pending"}
    assert all(j["attempts"] == 0 for j in jobs)
    assert all(j["last_error"].startswith("deferred: smtp circuit open") for j in jobs)
    assert stub_pipeline.mailer.attempts == 0

    stub_pipeline.drain()  # the probe goes through once the period is over and closes it
    jobs = email_jobs(herald_db)
    assert {(j["status"], j["attempts"]) for j in jobs} == {("complete", 1)}
    assert len(stub_pipeline.mailer.sent) == 2
    assert breaker_row(herald_db)["state"] == "closed"


def test_a_job_deferred_ten_times_keeps_its_whole_retry_budget(
    herald_db, stub_pipeline, monkeypatch
):
    send_email = stub_pipeline.actors.send_email

    send_email.options["max_retries"] = 2
    refusals = {"left": 10}
    real_admit = CircuitBreaker.admit

    def admit(self, pool):
        if refusals["left"]:
            refusals["left"] -= 1
            raise CircuitOpen("smtp", retry_in=0.01, open_for=1, last_error="SMTP 451")
        return real_admit(self, pool)

    monkeypatch.setattr(CircuitBreaker, "admit", admit)
    stub_pipeline.mailer.fail_next(TransientError("SMTP 451: greylisted"), times=2)
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 12")
    stub_pipeline.orchestrate()
    jobs = email_jobs(herald_db)
    assert {j["status"] for j in jobs} == {"complete"}
    assert sum(j["deferrals"] for j in jobs) == 10
    # 2 real failures (the whole budget) + 2 successes; no deferral counted as an attempt.
    assert sum(j["attempts"] for j in jobs) == 4


def test_a_550_fails_the_job_with_its_reason_and_does_not_open_the_breaker(
    herald_db, stub_pipeline
):
    configure(stub_pipeline, herald_db, breakers={"failure_threshold": 2})
    stub_pipeline.mailer.fail_next(PermanentError("SMTP 550: no such user"), times=6)
    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' || i FROM generate_series(1, 3) i")
    sql(herald_db, "UPDATE classes SET seats = 12")  # 3 changes x 2 recipients
    stub_pipeline.orchestrate()
    jobs = email_jobs(herald_db)
    assert {(j["status"], j["attempts"], j["deferrals"]) for j in jobs} == {("failed", 1, 0)}
    assert all("SMTP 550: no such user" in j["last_error"] for j in jobs)
    row = breaker_row(herald_db)
    assert (row["state"], row["consecutive_failures"]) == ("closed", 0)


def test_with_the_ai_circuit_open_a_send_routes_email_goes_out_plain_at_once(
    herald_db, stub_pipeline
):
    open_breaker(herald_db, "ai", probe_in=30, open_for=0)  # it has only just opened
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('Ann')")
    stub_pipeline.orchestrate()
    [sent] = stub_pipeline.mailer.sent
    assert "Summary unavailable" in sent.message.get_body(("plain",)).get_content()
    assert stub_pipeline.summariser.calls == []  # the AI was not called while open
    [job] = sql(herald_db, "SELECT * FROM herald.jobs WHERE actor = 'enrich'")
    assert job["status"] == "complete" and "AI circuit open" in job["last_error"]


def test_with_the_ai_circuit_open_a_hold_routes_enrich_job_waits_without_spending_retries(
    herald_db, stub_pipeline
):
    routes = [{**r, "on_ai_failure": "hold"} if r["ai"] else r for r in ROUTES["routes"]]
    configure(stub_pipeline, herald_db, routes=routes)
    open_breaker(herald_db, "ai", probe_in=0.5, open_for=0)
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('Ann')")
    stub_pipeline.orchestrate()  # deferred until the probe, which succeeds and closes it
    [job] = sql(herald_db, "SELECT * FROM herald.jobs WHERE actor = 'enrich'")
    assert (job["status"], job["attempts"]) == ("complete", 1) and job["deferrals"] >= 1
    assert len(stub_pipeline.summariser.calls) == 1
    [sent] = stub_pipeline.mailer.sent
    assert "Summary unavailable" not in sent.message.get_body(("plain",)).get_content()
    assert breaker_row(herald_db, "ai")["state"] == "closed"


def test_a_summary_made_while_closed_ends_the_ai_breakers_run_of_failures_in_the_hand_off(
    herald_db, stub_pipeline
):
    sql(herald_db, "UPDATE herald.circuit_breakers SET consecutive_failures = 3, "
                   "last_error = 'AI 500' WHERE breaker = 'ai'")  # fmt: skip
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('Ann')")
    stub_pipeline.orchestrate()
    assert len(stub_pipeline.summariser.calls) == 1
    row = breaker_row(herald_db, "ai")
    assert (row["state"], row["consecutive_failures"]) == ("closed", 0)
    [job] = sql(herald_db, "SELECT * FROM herald.jobs WHERE actor = 'enrich'")
    assert job["status"] == "complete"


def test_herald_stats_shows_a_line_per_breaker(herald_db):
    from herald.cli.stats import format_stats
    from herald.db import connect
    from monitoring.stats import stats as ledger_stats

    open_breaker(herald_db, "smtp")
    with connect(herald_db, autocommit=True) as conn:
        text = format_stats(ledger_stats(conn))
    assert "circuit breaker ai: closed, 0 consecutive failures" in text
    assert "circuit breaker smtp: open, 5 consecutive failures, opened at " in text


def test_the_exporter_reads_the_breakers_table(herald_db):
    from herald.db import connect
    from monitoring.exporter import read_snapshot

    open_breaker(herald_db, "smtp")
    with connect(herald_db, autocommit=True) as conn:
        snapshot = read_snapshot(conn)
    assert snapshot.breakers_open == {"smtp": True, "ai": False}


# -- for real: RabbitMQ, `dramatiq actors`, an SMTP server answering 451 for a while ---------

BREAKER_TOML = """
[mail]
from = "Herald <herald@example.com>"

[breakers]
failure_threshold = 3
reset_seconds = 2

[retries.send_email]
max_retries = 10
min_backoff_ms = 200
max_backoff_ms = 800

[[routes]]
name = "classes"
table = "classes"
operations = ["UPDATE"]
recipients = ["a@example.com", "b@example.com"]
"""


#: The issue's scenario: the SMTP server answers 451 for 30 seconds.
OUTAGE = 30.0


@pytest.mark.integration
def test_smtp_answering_451_for_a_while_opens_the_breaker_and_no_job_ends_failed(
    herald_env, herald_db, smtp_server, tmp_path
):
    config = tmp_path / "breaker.toml"
    config.write_text(BREAKER_TOML)
    env = {**herald_env, "HERALD_CONFIG": str(config)}
    smtp_server.reject_recipient("b@example.com", 550, "no such user")
    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' || i FROM generate_series(1, 12) i")
    sql(herald_db, "UPDATE classes SET seats = 1")  # 12 to a@ (451 for 30 s), 12 to b@ (550)
    log = tmp_path / "worker.log"
    worker = Worker(env, log, threads=4)
    try:
        wait_until(lambda: b"ready for action" in log.read_bytes(), timeout=30)
        smtp_server.fail_for(OUTAGE, code=451)
        started = time.monotonic()
        orchestrate(env)
        wait_until(
            lambda: sql(
                herald_db,
                "SELECT count(*) AS n FROM herald.jobs WHERE actor = 'send_email' "
                "AND status IN ('complete', 'failed')",
            )[0]["n"] == 24,
            timeout=OUTAGE + 60,
        )  # fmt: skip
    finally:
        worker.stop()
    jobs = email_jobs(herald_db)
    to_a = [j for j in jobs if j["recipient"] == "a@example.com"]
    to_b = [j for j in jobs if j["recipient"] == "b@example.com"]
    delivered = {m.message_id for m in smtp_server.messages}
    refused_at_data = smtp_server.attempts - len(smtp_server.messages)
    deferrals = sum(j["deferrals"] for j in to_a)
    print(
        f"\n451 for {OUTAGE:.0f} s: delivered {len(delivered)}/12 to a@ in "
        f"{time.monotonic() - started:.1f}s,"
        f" 451 answers {refused_at_data}, deferrals {deferrals}, max attempts of a job "
        f"{max(j['attempts'] for j in to_a)}; 550s failed {len(to_b)}/12"
    )
    assert {j["status"] for j in to_a} == {"complete"} and len(delivered) == 12
    assert deferrals > 0  # the breaker opened and held jobs back instead of failing them
    # Without the breaker every job would burn its retries on the 451s; with it, failures
    # stop at the threshold plus calls in flight plus one probe per reset period.
    assert refused_at_data <= 3 + 4 + OUTAGE / 2 + 2
    assert {j["status"] for j in to_b} == {"failed"}
    assert all("550" in j["last_error"] and "no such user" in j["last_error"] for j in to_b)
    assert all(j["attempts"] == 1 for j in to_b)
