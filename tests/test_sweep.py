"""The sweeper re-drives jobs the broker lost; it leaves healthy jobs alone."""

from __future__ import annotations

from orchestrator.orchestrate import run_orchestrator
from orchestrator.sweep import SweepReport, sweep
from tests.helpers import RecordingPublisher, make_settings, sql


def jobs_written(herald_db, pool):
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 3")
    run_orchestrator(pool, make_settings(herald_db), RecordingPublisher())


def test_healthy_jobs_are_left_alone(herald_db, pool):
    jobs_written(herald_db, pool)
    assert sweep(pool, make_settings(herald_db), RecordingPublisher()) == SweepReport(0, 0, 0)


def test_a_retry_that_never_reached_the_broker_is_republished(herald_db, pool):
    jobs_written(herald_db, pool)
    # What the ledger shows after Dramatiq failed to re-enqueue a retry: pending, attempted,
    # no due time, last started long ago.
    sql(
        herald_db,
        "UPDATE herald.jobs SET status = 'pending', attempts = 1, eta = NULL, "
        "started_at = now() - interval '10 minutes'",
    )
    publisher = RecordingPublisher()
    report = sweep(pool, make_settings(herald_db), publisher)
    assert report.lost_retries == 2 and len(publisher.refs) == 2
    assert sweep(pool, make_settings(herald_db), RecordingPublisher()).lost_retries == 0


def test_a_job_running_long_past_its_time_limit_is_requeued(herald_db, pool):
    jobs_written(herald_db, pool)
    sql(
        herald_db,
        "UPDATE herald.jobs SET status = 'running', attempts = 1, "
        "started_at = now() - interval '1 hour'",
    )
    publisher = RecordingPublisher()
    assert sweep(pool, make_settings(herald_db), publisher).stale_running == 2
    assert {r["status"] for r in sql(herald_db, "SELECT status FROM herald.jobs")} == {"pending"}
    assert sweep(pool, make_settings(herald_db), RecordingPublisher()) == SweepReport(0, 0, 0)
