"""The job ledger: unique open jobs, and the life of one attempt."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest

import herald.sql
from herald import ledger
from herald.ledger import OPEN_STATUSES, STATUSES, NewJob
from tests.helpers import sql


@pytest.fixture
def notification(herald_db):
    return sql(
        herald_db,
        "INSERT INTO herald.notifications (route, table_name, change_ids, recipients) "
        "VALUES ('r', 'public.classes', '{1}', '{a@example.com}') RETURNING id",
    )[0]["id"]


def test_no_two_open_jobs_share_an_actor_and_unique_key(pool, notification):
    job = NewJob("send_email", notification, 1, "a@example.com")
    with pool.connection() as conn:
        first = ledger.write_jobs(conn, [job])
        second = ledger.write_jobs(conn, [job, job])
    assert len(first) == 1 and second == []


def test_the_database_itself_refuses_a_second_open_job(herald_db, notification):
    insert = (
        "INSERT INTO herald.jobs (message_id, actor, queue, notification_id, unique_key) "
        "VALUES (gen_random_uuid(), 'send_email', 'email', %s, 'k')"
    )
    sql(herald_db, insert, (notification,))
    with pytest.raises(psycopg.errors.UniqueViolation):
        sql(herald_db, insert, (notification,))


def test_a_finished_job_frees_its_key_for_a_new_one(pool, herald_db, notification):
    job = NewJob("send_email", notification, 1, "a@example.com")
    with pool.connection() as conn:
        [ref] = ledger.write_jobs(conn, [job])
    sql(herald_db, "UPDATE herald.jobs SET status = 'complete' WHERE id = %s", (ref.id,))
    with pool.connection() as conn:
        assert len(ledger.write_jobs(conn, [job])) == 1


def test_an_attempt_runs_only_for_pending_or_running_jobs(pool, herald_db, notification):
    with pool.connection() as conn:
        [ref] = ledger.write_jobs(conn, [NewJob("send_email", notification, 1, "a@example.com")])
        assert ledger.start_job(conn, ref.id)[0] is not None
        assert ledger.start_job(conn, ref.id)[0] is not None  # redelivered after a crash
        ledger.complete(conn, ref.id)
        assert ledger.start_job(conn, ref.id) == (None, "complete")
        assert ledger.start_job(conn, 999_999) == (None, None)
    row = sql(herald_db, "SELECT attempts, finished_at FROM herald.jobs")[0]
    assert row["attempts"] == 2 and row["finished_at"] is not None


def test_every_status_guard_written_as_none_of_the_others_names_every_other_status() -> None:
    """The hot statements write "running" (or "open") as none of the other statuses, so
    PostgreSQL finds the job by its id (queries.sql, job_complete): a status added to the
    ledger and not to these lists would make them match it."""
    sql_dir = Path(herald.sql.__file__).parent
    schema = (sql_dir / "schema.sql").read_text()
    declared = re.search(r"CHECK \(status IN \(('pending', 'running'[^)]*)\)\)", schema)
    assert declared is not None
    assert tuple(re.findall(r"'(\w+)'", declared[1])) == STATUSES
    meanings = {frozenset(STATUSES) - {"running"}, frozenset(STATUSES) - set(OPEN_STATUSES)}
    guards = [
        (path.name, frozenset(re.findall(r"'(\w+)'", listed)))
        for path in sorted(sql_dir.glob("*.sql"))
        for listed in re.findall(r"status NOT IN \(([^)]*)\)", path.read_text())
    ]
    assert len(guards) >= 10
    for name, listed in guards:
        assert listed in meanings, f"{name}: status NOT IN {sorted(listed)}"
