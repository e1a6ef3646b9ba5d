"""The LISTEN/NOTIFY waker: fires the orchestrator on commit, coalesces, survives restarts."""

from __future__ import annotations

import threading

import pytest

from orchestrator.waker import Waker
from tests.helpers import sql
from tests.services import require_service, wait_until


class Wakes:
    """A wake() that counts, and optionally runs an orchestrator-like claim afterwards."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.count += 1
        if self.url:  # what an orchestrator run does first, then claim everything
            sql(self.url, "INSERT INTO herald.orchestrator_runs DEFAULT VALUES")
            sql(
                self.url, "UPDATE herald.change_log SET claimed_at = now() WHERE claimed_at IS NULL"
            )


@pytest.fixture
def waker_for(herald_db):
    started: list[Waker] = []

    def start(wake, **kwargs) -> Waker:
        waker = Waker(herald_db, wake, **kwargs).start()
        started.append(waker)
        assert waker.connected.wait(10)
        return waker

    yield start
    for waker in started:
        waker.stop()


def test_tracked_tables_get_a_statement_level_notify_trigger(herald_db):
    triggers = sql(
        herald_db,
        "SELECT tgrelid::regclass::text AS t, tgname FROM pg_trigger "
        "WHERE tgname LIKE 'herald_%%' ORDER BY 1, 2",
    )
    assert [(r["t"], r["tgname"]) for r in triggers] == [
        ("classes", "herald_change_log"), ("classes", "herald_notify"),
        ("members", "herald_change_log"), ("members", "herald_notify"),
    ]  # fmt: skip
    sql(herald_db, "SELECT herald.untrack('classes')")
    left = sql(
        herald_db,
        "SELECT count(*) AS n FROM pg_trigger "
        "WHERE tgrelid = 'classes'::regclass AND tgname LIKE 'herald_%%'",
    )
    assert left == [{"n": 0}]


def test_a_committed_change_wakes_the_orchestrator(herald_db, waker_for):
    wakes = Wakes(herald_db)
    waker = waker_for(wakes, recheck_seconds=5)
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 10)")
    assert wait_until(lambda: wakes.count == 1, timeout=5)
    assert waker.notifications >= 1


def test_an_uncommitted_change_does_not(herald_db, waker_for):
    import psycopg

    wakes = Wakes(herald_db)
    waker_for(wakes, recheck_seconds=5)
    with psycopg.connect(herald_db) as conn:
        conn.execute("INSERT INTO classes (title, seats) VALUES ('Yoga', 10)")
        assert not wait_until(lambda: wakes.count > 0, timeout=0.5)
        conn.commit()
    assert wait_until(lambda: wakes.count == 1, timeout=5)


def test_a_burst_while_a_wake_up_is_pending_coalesces_into_one(herald_db, waker_for):
    wakes = Wakes()  # sends, but no orchestrator run starts: the wake-up stays pending
    waker = waker_for(wakes, recheck_seconds=0.05, pending_timeout=60)
    for i in range(200):
        sql(herald_db, "INSERT INTO classes (title, seats) VALUES (%s, 10)", (f"Class {i}",))
    assert wait_until(lambda: waker.notifications >= 200, timeout=10)
    assert wakes.count == 1


def test_a_burst_with_runs_in_between_costs_few_wake_ups(herald_db, waker_for):
    wakes = Wakes(herald_db)
    waker = waker_for(wakes, recheck_seconds=0.05)
    for i in range(300):
        sql(herald_db, "INSERT INTO classes (title, seats) VALUES (%s, 10)", (f"Class {i}",))
    assert wait_until(lambda: waker.notifications >= 300, timeout=10)
    assert wait_until(
        lambda: sql(herald_db, "SELECT count(*) AS n FROM herald.change_log "
                               "WHERE claimed_at IS NULL")[0]["n"] == 0, timeout=5)  # fmt: skip
    assert 1 <= wakes.count < 300


def test_changes_nobody_was_told_about_are_found_by_the_recheck(herald_db, waker_for):
    # A change whose notification was lost (here: written without the notify trigger).
    sql(herald_db, "DROP TRIGGER herald_notify ON classes")
    wakes = Wakes(herald_db)
    waker_for(wakes, recheck_seconds=0.1)
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 10)")
    assert wait_until(lambda: wakes.count == 1, timeout=5)


def test_the_waker_survives_a_postgresql_restart(herald_db, waker_for, postgres_server):
    wakes = Wakes(herald_db)
    waker = waker_for(wakes, recheck_seconds=0.1, max_backoff=0.5)
    try:
        postgres_server.restart()
    except NotImplementedError:
        require_service(
            "a PostgreSQL these tests can restart",
            "HERALD_TEST_DATABASE_URL points at an external server",
        )
    # Whether the waker has noticed the restart yet or not, the change is orchestrated.
    wait_until(lambda: _up(herald_db), timeout=30)
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 10)")
    assert wait_until(
        lambda: sql(herald_db, "SELECT count(*) AS n FROM herald.change_log "
                               "WHERE claimed_at IS NULL") == [{"n": 0}], timeout=15)  # fmt: skip
    assert waker.connected.is_set() and wakes.count >= 1


def _up(url: str) -> bool:
    try:
        sql(url, "SELECT 1")
    except Exception:  # noqa: BLE001 - still restarting
        return False
    return True


def test_the_waker_drives_the_real_pipeline(stub_pipeline, herald_db, waker_for):
    """Through the orchestrate actor on the StubBroker: a committed change becomes emails."""
    orchestrate = stub_pipeline.actors.orchestrate

    waker_for(orchestrate.send, recheck_seconds=0.1)
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 10)")
    sql(herald_db, "UPDATE classes SET seats = 11")
    assert wait_until(lambda: len(stub_pipeline.mailer.sent) == 2, timeout=10)
