"""Retention: `herald jobs purge` and the hourly purge actor, on a real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from herald.cli import main as cli
from herald.db import connect
from herald.retention import parse_age, purge
from tests.helpers import sql

FINISHED = ("complete", "canceled", "superseded")


def old_change(url, age_days, outcome="routed", claimed=True):
    return sql(
        url,
        "INSERT INTO herald.change_log (table_name, operation, row_pk, new_row, changed_at, "
        "claimed_at, outcome) VALUES ('public.classes', 'INSERT', '{\"id\": 1}', '{\"id\": 1}', "
        "now() - make_interval(days => %(d)s), "
        "CASE WHEN %(claimed)s THEN now() - make_interval(days => %(d)s) END, %(outcome)s) "
        "RETURNING id",
        {"d": age_days, "outcome": outcome if claimed else None, "claimed": claimed},
    )[0]["id"]


def notification(url, *, age_days, statuses=("complete",), change_ids=None):
    """A notification with one email job per status, a summary and a delivery, all aged."""
    if change_ids is None:
        change_ids = [old_change(url, age_days)]
    nid = sql(
        url,
        "INSERT INTO herald.notifications (route, table_name, change_ids, recipients, "
        "created_at) VALUES ('classes', 'public.classes', %s, ARRAY['a@example.com'], "
        "now() - make_interval(days => %s)) RETURNING id",
        (change_ids, age_days),
    )[0]["id"]
    for i, status in enumerate(statuses):
        sql(
            url,
            "INSERT INTO herald.jobs (message_id, actor, queue, status, notification_id, "
            "change_id, recipient, created_at, finished_at) VALUES (gen_random_uuid(), "
            "'send_email', 'email', %(s)s, %(n)s, %(c)s, %(r)s, "
            "now() - make_interval(days => %(d)s), CASE WHEN %(s)s NOT IN ('pending', 'running') "
            "THEN now() - make_interval(days => %(d)s) END)",
            {"s": status, "n": nid, "c": change_ids[0], "r": f"r{i}@example.com", "d": age_days},
        )
    sql(
        url,
        "INSERT INTO herald.summaries (notification_id, status, summary) "
        "VALUES (%s, 'ok', 'a summary')",
        (nid,),
    )
    sql(
        url,
        "INSERT INTO herald.deliveries (notification_id, recipient, message_id_header, "
        "status) VALUES (%s, 'r0@example.com', '<x@example.com>', 'sent')",
        (nid,),
    )
    return nid


def exists(url, table, id_):
    return bool(sql(url, f"SELECT 1 FROM herald.{table} WHERE id = %s", (id_,)))


def count(url, table):
    return sql(url, f"SELECT count(*) AS n FROM herald.{table}")[0]["n"]


def purge_now(url, age="30d", **kwargs):
    with connect(url, autocommit=True) as conn:
        return purge(conn, parse_age(age), **kwargs)


@pytest.mark.parametrize("status", FINISHED)
def test_an_old_finished_notification_goes_with_its_jobs_summary_delivery_and_change(
    herald_db, status
):
    nid = notification(herald_db, age_days=40, statuses=(status, "complete"))
    [change_id] = sql(herald_db, "SELECT change_ids[1] AS c FROM herald.notifications")[0].values()

    report = purge_now(herald_db)

    assert report.counts() == {
        "notifications": 1,
        "jobs": 2,
        "summaries": 1,
        "deliveries": 1,
        "changes": 1,
        "orchestrator_runs": 0,
        "digest_runs": 0,
        "recipient_skips": 0,
    }
    assert not exists(herald_db, "notifications", nid)
    assert not exists(herald_db, "change_log", change_id)
    for table in ("jobs", "summaries", "deliveries"):
        assert count(herald_db, table) == 0


def test_recent_finished_work_stays(herald_db):
    nid = notification(herald_db, age_days=10)
    assert purge_now(herald_db).total == 0
    assert exists(herald_db, "notifications", nid) and count(herald_db, "jobs") == 1


def test_a_notification_with_a_job_finished_after_the_cutoff_stays_whole(herald_db):
    nid = notification(herald_db, age_days=40, statuses=("complete", "complete"))
    sql(
        herald_db,
        "UPDATE herald.jobs SET finished_at = now() WHERE id = (SELECT max(id) FROM herald.jobs)",
    )
    assert purge_now(herald_db).total == 0
    assert exists(herald_db, "notifications", nid) and count(herald_db, "jobs") == 2


def test_failed_jobs_stay_with_everything_a_retry_needs_unless_purged_explicitly(herald_db):
    nid = notification(herald_db, age_days=90, statuses=("complete", "failed"))

    assert purge_now(herald_db).total == 0
    assert exists(herald_db, "notifications", nid)
    assert count(herald_db, "jobs") == 2 and count(herald_db, "change_log") == 1

    report = purge_now(herald_db, include_failed=True)
    assert (report.notifications, report.jobs, report.changes) == (1, 2, 1)
    assert count(herald_db, "notifications") == 0


@pytest.mark.parametrize("status", ["pending", "running"])
def test_open_jobs_never_go_not_even_with_include_failed(herald_db, status):
    nid = notification(herald_db, age_days=365, statuses=(status, "complete"))
    assert purge_now(herald_db, "0m", include_failed=True).total == 0
    assert exists(herald_db, "notifications", nid) and count(herald_db, "jobs") == 2
    assert count(herald_db, "change_log") == 1


def test_a_change_listed_by_a_kept_notification_stays_even_if_an_older_one_listed_it(herald_db):
    # Debounce: a superseded notification and its successor list the same change.
    change = old_change(herald_db, 40)
    old = notification(herald_db, age_days=40, statuses=("superseded",), change_ids=[change])
    kept = notification(herald_db, age_days=40, statuses=("failed",), change_ids=[change])

    report = purge_now(herald_db)

    assert (report.notifications, report.changes) == (1, 0)
    assert not exists(herald_db, "notifications", old)
    assert exists(herald_db, "notifications", kept) and exists(herald_db, "change_log", change)


def test_old_skipped_and_failed_changes_go_but_unclaimed_and_recent_ones_stay(herald_db):
    skipped = old_change(herald_db, 40, outcome="skipped")
    failed = old_change(herald_db, 40, outcome="failed")
    unclaimed = old_change(herald_db, 40, claimed=False)
    recent = old_change(herald_db, 1, outcome="skipped")

    assert purge_now(herald_db).changes == 2

    assert not exists(herald_db, "change_log", skipped)
    assert not exists(herald_db, "change_log", failed)
    assert exists(herald_db, "change_log", unclaimed) and exists(herald_db, "change_log", recent)


def test_the_orchestrator_run_log_is_purged_but_not_a_run_in_progress(herald_db):
    sql(
        herald_db,
        "INSERT INTO herald.orchestrator_runs (started_at, finished_at, status) "
        "VALUES (now() - interval '40 days', now() - interval '40 days', 'succeeded'), "
        "(now() - interval '40 days', NULL, 'running'), (now(), now(), 'succeeded')",
    )
    assert purge_now(herald_db).orchestrator_runs == 1
    assert count(herald_db, "orchestrator_runs") == 2


def test_more_rows_than_a_batch_are_purged_in_several_short_transactions(herald_db):
    n = 12_000
    sql(
        herald_db,
        """
        WITH c AS (
            INSERT INTO herald.change_log (table_name, operation, row_pk, new_row, changed_at,
                                           claimed_at, outcome)
            SELECT 'public.classes', 'INSERT', jsonb_build_object('id', i), '{}',
                   now() - interval '40 days', now() - interval '40 days', 'routed'
              FROM generate_series(1, %(n)s) AS i
            RETURNING id),
        n AS (
            INSERT INTO herald.notifications (route, table_name, change_ids, recipients, created_at)
            SELECT 'classes', 'public.classes', ARRAY[c.id], ARRAY['a@example.com'],
                   now() - interval '40 days' FROM c
            RETURNING id, change_ids[1] AS change_id)
        INSERT INTO herald.jobs (message_id, actor, queue, status, notification_id, change_id,
                                 recipient, created_at, finished_at)
        SELECT gen_random_uuid(), 'send_email', 'email', 'complete', n.id, n.change_id,
               'a@example.com', now() - interval '40 days', now() - interval '40 days' FROM n
    """,
        {"n": n},
    )
    kept = notification(herald_db, age_days=40, statuses=("failed",))

    report = purge_now(herald_db, batch_size=5_000)

    assert (report.notifications, report.jobs, report.changes) == (n, n, n)
    assert report.batches >= 3 + 3  # notifications and changes each took three batches
    assert count(herald_db, "notifications") == 1 and exists(herald_db, "notifications", kept)
    assert count(herald_db, "change_log") == 1


def test_a_time_budget_stops_between_batches_and_the_next_run_carries_on(herald_db):
    for _ in range(3):
        notification(herald_db, age_days=40)
    with connect(herald_db, autocommit=True) as conn:
        first = purge(conn, timedelta(days=30), batch_size=1, max_runtime=0)
        assert not first.complete and first.total == 0
        second = purge(conn, timedelta(days=30), batch_size=1)
    assert second.complete and second.notifications == 3


@pytest.mark.parametrize("text,seconds", [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400)])
def test_ages_are_given_in_days_hours_or_minutes(text, seconds):
    assert parse_age(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["30", "1w", "-3d", "d", "1.5d", ""])
def test_any_other_age_is_refused(text):
    with pytest.raises(ValueError, match="Nd|days, hours or minutes"):
        parse_age(text)


def test_herald_jobs_purge_prints_what_it_removed(herald_db, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HERALD_DATABASE_URL", herald_db)
    monkeypatch.setenv("HERALD_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    notification(herald_db, age_days=40)
    failed = notification(herald_db, age_days=40, statuses=("failed",))

    assert cli.main(["jobs", "purge", "--older-than", "30d"]) == 0
    out = capsys.readouterr().out
    assert "failed jobs kept" in out
    assert any(line.split() == ["notifications", "1"] for line in out.splitlines())
    assert any(line.split() == ["jobs", "1"] for line in out.splitlines())
    assert exists(herald_db, "notifications", failed)

    assert cli.main(["jobs", "purge", "--older-than", "30d", "--include-failed"]) == 0
    assert not exists(herald_db, "notifications", failed)


def test_herald_jobs_purge_refuses_an_age_it_cannot_read(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["jobs", "purge", "--older-than", "a month"])
    assert exit_.value.code == 2
    assert "invalid age 'a month'" in capsys.readouterr().err


def test_the_hourly_purge_actor_purges_old_finished_work_but_never_failed_jobs(
    herald_db, stub_pipeline
):
    purge_actor = stub_pipeline.actors.purge

    done = notification(herald_db, age_days=40)
    failed = notification(herald_db, age_days=400, statuses=("failed",))
    assert stub_pipeline.settings.retention.days == 30

    purge_actor.send()
    stub_pipeline.broker.join("maintenance")
    stub_pipeline.worker.join()

    assert not exists(herald_db, "notifications", done)
    assert exists(herald_db, "notifications", failed) and count(herald_db, "jobs") == 1
