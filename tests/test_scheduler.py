"""Scheduler safety: two periodiq schedulers at once, a scheduler that was down, and retries
of periodic actors against periodiq's 30-second skip of stale ticks."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pendulum
import pytest
from dramatiq import Message

from herald.config import DEFAULT_RETRIES
from tests.helpers import sql
from tests.workers import HERALD_TOML, REPO, Worker

# What periodiq's Scheduler does on each tick (Scheduler.schedule -> send_actors), run by
# a separate process that waits for an agreed instant so that two of them fire together.
TICK = """
import sys, time
from datetime import timedelta
import pendulum
from periodiq import Scheduler
from herald.bootstrap import bootstrap
from herald.config import load_settings

app = bootstrap(load_settings())
orchestrate = app.actors.orchestrate
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
now = (pendulum.now() + timedelta(seconds=0.5)).replace(microsecond=0)
Scheduler([orchestrate]).send_actors([orchestrate], now=now)
app.close()
"""


def scheduler_ticks(env, count: int) -> None:
    """`count` scheduler processes each send the periodic orchestrate message at one instant."""
    at = time.time() + 2.0  # time enough for every process to import Herald first
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TICK, str(at)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(count)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out.decode()


@pytest.fixture
def small_batches_env(herald_env, tmp_path):
    config = tmp_path / "small-batches.toml"
    config.write_text(HERALD_TOML + "\n[orchestrator]\nbatch_size = 5\n")
    # Periodic ticks only: the LISTEN/NOTIFY waker would orchestrate on its own.
    return {**herald_env, "HERALD_CONFIG": str(config), "HERALD_WAKER": "off"}


def update_classes(url, n):
    first = sql(url, "SELECT coalesce(max(id), 0) AS m FROM classes")[0]["m"]
    sql(
        url,
        "INSERT INTO classes (title, seats) SELECT 'Class ' || i, 10 "
        "FROM generate_series(1, %s) AS i",
        (n,),
    )
    sql(url, "UPDATE classes SET seats = seats + 1 WHERE id > %s", (first,))


def assert_each_change_sent_once_to_each_recipient(url, smtp_server, changes):
    received = smtp_server.wait_for(2 * changes, timeout=60)
    time.sleep(1.0)  # a duplicate would show up now
    received = smtp_server.messages
    assert len(received) == 2 * changes
    assert len({m.message_id for m in received}) == 2 * changes
    assert Counter(r for m in received for r in m.rcpt_tos) == {
        "a@example.com": changes,
        "b@example.com": changes,
    }
    # Every change was claimed by exactly one batch: one notification each, none shared.
    listed = [r["c"] for r in sql(url, "SELECT unnest(change_ids) AS c FROM herald.notifications")]
    assert len(listed) == len(set(listed)) == changes
    assert sql(url, "SELECT count(*) AS n FROM herald.change_log WHERE claimed_at IS NULL") == [
        {"n": 0}
    ]


@pytest.mark.integration
def test_two_schedulers_ticking_at_once_cause_no_second_batch_and_no_second_email(
    small_batches_env, herald_db, smtp_server, tmp_path
):
    update_classes(herald_db, 60)  # 60 changes in batches of 5, two recipients each
    worker = Worker(small_batches_env, tmp_path / "worker.log", threads=4)
    try:
        scheduler_ticks(small_batches_env, 2)
        assert_each_change_sent_once_to_each_recipient(herald_db, smtp_server, 60)
        runs = sql(herald_db, "SELECT status, claimed, batches FROM herald.orchestrator_runs")
    finally:
        worker.stop()

    print(f"\ntwo ticks at once: runs={runs}")
    # Both ticks ran (neither was skipped); a LISTEN/NOTIFY waker may add runs of its own.
    assert len(runs) >= 2
    # Between them each change was claimed once: 60 INSERTs (no route) and 60 UPDATEs.
    assert sum(r["claimed"] for r in runs) == 120


@pytest.mark.integration
def test_changes_made_while_no_scheduler_ran_are_all_sent_by_the_next_tick(
    small_batches_env, herald_db, smtp_server, tmp_path
):
    worker = Worker(small_batches_env, tmp_path / "worker.log", threads=4)
    try:
        update_classes(herald_db, 3)
        scheduler_ticks(small_batches_env, 1)
        smtp_server.wait_for(6, timeout=30)
        # The scheduler is down: changes pile up in the change log, nothing sends them ...
        update_classes(herald_db, 27)
        time.sleep(1.0)
        assert len(smtp_server.messages) == 6
        # ... until it is back: its first tick drains them all, batch after batch.
        scheduler_ticks(small_batches_env, 1)
        assert_each_change_sent_once_to_each_recipient(herald_db, smtp_server, 30)
    finally:
        worker.stop()


# --- retries of periodic actors -------------------------------------------------------------


def test_orchestrate_and_sweep_do_not_retry_the_next_tick_is_their_retry():
    assert DEFAULT_RETRIES["orchestrate"].max_retries == 0
    assert DEFAULT_RETRIES["sweep"].max_retries == 0


def test_the_purge_actor_retries_with_backoffs_longer_than_periodiqs_skip_delay():
    from actors.broker import PERIODIC_SKIP_SECONDS

    policy = DEFAULT_RETRIES["purge"]
    assert policy.max_retries > 0
    assert policy.max_backoff_ms / 1000 > PERIODIC_SKIP_SECONDS  # why the middleware is needed


def periodic_message(actor, *, age_seconds, retries=None):
    options = {"scheduled_at": str(pendulum.now().subtract(seconds=age_seconds))}
    if retries is not None:
        options["retries"] = retries
    return Message(
        queue_name=actor.queue_name,
        actor_name=actor.actor_name,
        args=(),
        kwargs={},
        options=options,
    )


def orchestrator_runs(url):
    return sql(url, "SELECT count(*) AS n FROM herald.orchestrator_runs")[0]["n"]


def test_a_stale_periodic_tick_is_still_skipped(herald_db, stub_pipeline):
    orchestrate = stub_pipeline.actors.orchestrate

    stub_pipeline.broker.enqueue(periodic_message(orchestrate, age_seconds=300))
    stub_pipeline.drain()
    assert orchestrator_runs(herald_db) == 0


def test_a_retried_periodic_message_runs_even_when_its_tick_is_older_than_30s(
    herald_db, stub_pipeline
):
    orchestrate = stub_pipeline.actors.orchestrate

    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 12")
    stub_pipeline.broker.enqueue(periodic_message(orchestrate, age_seconds=300, retries=1))
    stub_pipeline.drain()
    assert orchestrator_runs(herald_db) == 1
    assert len(stub_pipeline.mailer.sent) == 2


def test_a_failed_purge_is_retried_after_more_than_30s_and_not_skipped(
    herald_db, stub_pipeline, monkeypatch
):
    """The real Retries path: the purge fails once, Retries re-enqueues the same message
    (scheduled_at and all) with retries=1; by the time it runs its tick is 5 minutes old."""
    import actors.purge

    calls = []
    real = actors.purge.purge_finished

    def flaky(*args, **kwargs):
        calls.append(pendulum.now())
        if len(calls) == 1:
            # Age the tick as a long backoff would have (without waiting for it).
            message = __import__("dramatiq").middleware.CurrentMessage.get_current_message()
            message.options["scheduled_at"] = str(pendulum.now().subtract(minutes=5))
            raise ConnectionError("database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(actors.purge, "purge_finished", flaky)
    stub_pipeline.use()  # declared again: the actor now calls the flaky purge
    purge = stub_pipeline.actors.purge
    purge.send_with_options(scheduled_at=str(pendulum.now()))
    stub_pipeline.broker.join("maintenance")
    stub_pipeline.worker.join()
    assert len(calls) == 2  # the retry ran
