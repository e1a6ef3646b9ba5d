"""The orchestrator claims, routes and writes jobs; one batch at a time; nothing lost."""

from __future__ import annotations

import threading

import psycopg

from orchestrator.orchestrate import run_orchestrator
from tests.helpers import ROUTES, RecordingPublisher, make_settings, sql


def orchestrate(pool, url, publisher=None, **toml):
    publisher = publisher or RecordingPublisher()
    return run_orchestrator(pool, make_settings(url, {**ROUTES, **toml}), publisher), publisher


def test_inserts_on_an_ai_route_become_enrich_jobs(herald_db, pool):
    sql(
        herald_db,
        "INSERT INTO members (first_name, email) SELECT 'Ann', 'ann@example.org' "
        "FROM generate_series(1, 3)",
    )
    report, published = orchestrate(pool, herald_db)
    assert (report.claimed, report.routed) == (3, 3)
    assert [r.actor for r in published.refs] == ["enrich"] * 3
    assert (
        sql(herald_db, "SELECT count(*) AS n FROM herald.jobs WHERE published_at IS NOT NULL")[0][
            "n"
        ]
        == 3
    )


def test_updates_on_a_plain_route_become_one_email_job_per_recipient(herald_db, pool):
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")  # no INSERT route: skipped
    sql(herald_db, "UPDATE classes SET seats = 5")
    report, published = orchestrate(pool, herald_db)
    assert (report.claimed, report.routed, report.skipped) == (2, 1, 1)
    assert sorted((r.actor, r.queue) for r in published.refs) == [("send_email", "email")] * 2
    rows = sql(herald_db, "SELECT recipient FROM herald.jobs ORDER BY recipient")
    assert [r["recipient"] for r in rows] == ["a@example.com", "b@example.com"]


def test_changes_without_a_route_are_skipped_and_counted(herald_db, pool):
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "DELETE FROM classes")
    report, published = orchestrate(pool, herald_db)
    assert report.skipped == 2 and published.refs == []
    outcomes = sql(herald_db, "SELECT outcome, error FROM herald.change_log")
    assert {(o["outcome"], o["error"]) for o in outcomes} == {("skipped", "no matching route")}


def test_a_malformed_change_is_failed_with_its_reason_and_the_batch_goes_on(herald_db, pool):
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a'), ('b')")  # no INSERT route
    sql(herald_db, "UPDATE classes SET title = repeat('x', 2000000) WHERE id = 1")  # too large
    sql(herald_db, "UPDATE classes SET title = 'short' WHERE id = 2")
    report, published = orchestrate(pool, herald_db)
    assert report.failed == 1 and report.routed == 1
    failed = sql(herald_db, "SELECT error FROM herald.change_log WHERE outcome = 'failed'")
    assert "too large" in failed[0]["error"]
    assert len(published.refs) == 2  # the short update, to both recipients


def test_a_change_committed_after_a_higher_id_was_claimed_is_still_sent(herald_db, pool):
    slow = psycopg.connect(herald_db)
    slow.execute("INSERT INTO members (first_name) VALUES ('early id, late commit')")
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('later id, early commit')")
    first, _ = orchestrate(pool, herald_db)
    slow.commit()
    slow.close()
    second, _ = orchestrate(pool, herald_db)
    assert (first.claimed, second.claimed) == (1, 1)
    ids = sql(herald_db, "SELECT id, outcome FROM herald.change_log ORDER BY id")
    assert [r["outcome"] for r in ids] == ["routed", "routed"]


def test_it_drains_the_backlog_batch_by_batch(herald_db, pool):
    sql(herald_db, "INSERT INTO members (first_name) SELECT 'x' FROM generate_series(1, 120)")
    report, _ = orchestrate(pool, herald_db, orchestrator={"batch_size": 50})
    assert (report.claimed, report.batches) == (120, 3)


def test_five_orchestrators_at_once_never_claim_the_same_change_twice(herald_db, pool):
    sql(herald_db, "INSERT INTO members (first_name) SELECT 'x' FROM generate_series(1, 500)")
    publisher = RecordingPublisher()
    settings = make_settings(herald_db)
    threads = [
        threading.Thread(target=run_orchestrator, args=(pool, settings, publisher))
        for _ in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run_orchestrator(pool, settings, publisher)  # whoever was locked out: drain the rest
    per_change = sql(
        herald_db,
        "SELECT change_ids[1] AS c, count(*) AS n FROM herald.notifications "
        "GROUP BY 1 HAVING count(*) > 1",
    )
    assert per_change == []
    assert len(publisher.refs) == 500
    assert len({r.id for r in publisher.refs}) == 500


def test_a_job_written_but_never_published_is_published_by_a_later_run(herald_db, pool):
    sql(herald_db, "INSERT INTO members (first_name) VALUES ('x'), ('y')")
    crashed = RecordingPublisher(fail_after=0)  # commit happened, publish did not
    report, _ = orchestrate(pool, herald_db, crashed)
    assert report.published == 0
    sql(herald_db, "UPDATE herald.jobs SET created_at = created_at - interval '1 minute'")
    later, republisher = orchestrate(pool, herald_db)
    assert later.republished == 2 and len(republisher.refs) == 2


def test_each_run_is_recorded(herald_db, pool):
    orchestrate(pool, herald_db)
    runs = sql(herald_db, "SELECT status, finished_at FROM herald.orchestrator_runs")
    assert runs[0]["status"] == "succeeded" and runs[0]["finished_at"] is not None
