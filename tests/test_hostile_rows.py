"""A hostile row cannot stop the orchestrator: a change nested too deep or too large is
failed alone, with its reason, without being loaded; the batch goes on, later changes are
still claimed, memory stays bounded, and a row that churns is split across notifications
without losing a change."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from herald.config import ConfigError
from orchestrator.orchestrate import run_orchestrator
from tests.helpers import ROUTES, RecordingPublisher, make_settings, sql
from tests.workers import REPO

DEEP = 3_000  # PostgreSQL accepts it; Python's JSON decoder recurses past its limit on it


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def outcomes(url):
    rows = sql(url, "SELECT id, outcome, error FROM herald.change_log ORDER BY id")
    return {r["id"]: (r["outcome"], r["error"]) for r in rows}


def test_a_row_nested_3000_levels_deep_is_failed_alone_and_later_changes_are_still_claimed(
    herald_db, pool
):
    sql(herald_db, "ALTER TABLE classes ADD COLUMN extra jsonb")
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a'), ('b'), ('c')")  # skipped
    sql(herald_db, "UPDATE classes SET seats = 1 WHERE id = 1")
    sql(herald_db, "UPDATE classes SET extra = %s::jsonb WHERE id = 2", (nested(DEEP),))
    sql(herald_db, "UPDATE classes SET seats = 3 WHERE id = 3")
    settings, published = make_settings(herald_db), RecordingPublisher()

    report = run_orchestrator(pool, settings, published)

    assert (report.claimed, report.routed, report.skipped, report.failed) == (6, 2, 3, 1)
    outcome, error = outcomes(herald_db)[5]
    assert outcome == "failed"
    assert error == (
        "change 5: new_row is nested more than 64 levels deep, over the limit of 64 "
        "([limits] max_change_depth); not loaded or sent"
    )
    assert len(published.refs) == 4  # the two shallow updates, to both recipients

    sql(herald_db, "UPDATE classes SET seats = 4 WHERE id = 1")
    later = run_orchestrator(pool, settings, published)
    assert (later.claimed, later.routed) == (1, 1)
    assert outcomes(herald_db)[7] == ("routed", None)


def test_a_primary_key_nested_too_deep_is_failed_too(herald_db, pool):
    sql(herald_db, "CREATE TABLE docs (doc jsonb PRIMARY KEY); SELECT herald.track('docs')")
    # 100 levels: a btree index entry cannot hold 3,000 (it must fit in a page).
    sql(herald_db, "INSERT INTO docs VALUES (%s::jsonb), ('{}')", (nested(100),))
    raw = copy.deepcopy(ROUTES)
    raw["routes"].append({"name": "docs", "table": "docs", "recipients": ["a@example.com"]})

    report = run_orchestrator(pool, make_settings(herald_db, raw), RecordingPublisher())

    assert (report.failed, report.routed) == (1, 1)
    assert "change 1: row_pk is nested more than 64 levels deep" in outcomes(herald_db)[1][1]


def test_the_depth_limit_is_configurable_and_counts_the_row_itself(herald_db, pool):
    sql(herald_db, "ALTER TABLE classes ADD COLUMN extra jsonb")
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a'), ('b')")
    sql(herald_db, "UPDATE classes SET extra = %s::jsonb WHERE id = 1", (nested(9),))  # 10 deep
    sql(herald_db, "UPDATE classes SET extra = %s::jsonb WHERE id = 2", (nested(10),))  # 11
    raw = {**ROUTES, "limits": {"max_change_depth": 10}}

    report = run_orchestrator(pool, make_settings(herald_db, raw), RecordingPublisher())

    assert (report.routed, report.failed) == (1, 1)
    assert outcomes(herald_db)[3] == ("routed", None)
    assert "nested more than 10 levels deep" in outcomes(herald_db)[4][1]


@pytest.mark.parametrize(
    ("doc", "depth"),
    [
        ("1", 0),
        ('"text"', 0),
        ("[]", 1),
        ("{}", 1),
        ('{"a": 1, "b": "x"}', 1),
        ("[[]]", 2),
        ('[1, [2, [3]], {"a": {"b": {}}}]', 4),
        (nested(64), 64),
        (nested(65), 65),
        (nested(DEEP), 65),  # counting stops past the limit
    ],
    ids=lambda v: v if isinstance(v, int) or len(v) < 40 else f"{len(v) // 2} levels",
)
def test_jsonb_depth_counts_nested_arrays_and_objects_up_to_one_past_the_limit(
    herald_db, doc, depth
):
    [row] = sql(herald_db, "SELECT herald.jsonb_depth(%s::jsonb, 64) AS depth", (doc,))
    assert row["depth"] == depth


# A fresh process, so that the heap of earlier tests cannot hide (or add to) the growth.
MEASURE_RSS = """
import json, os, sys, threading
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from orchestrator.orchestrate import run_orchestrator
from tests.helpers import RecordingPublisher, make_settings

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

url = sys.argv[1]
pool = ConnectionPool(url, min_size=2, max_size=4, kwargs={"row_factory": dict_row}, open=True)
with pool.connection() as conn:
    conn.execute("SELECT 1")
before = peak = rss()
done = threading.Event()
def sample():
    global peak
    while not done.wait(0.001):
        peak = max(peak, rss())
sampler = threading.Thread(target=sample)
sampler.start()
report = run_orchestrator(pool, make_settings(url), RecordingPublisher())
done.set()
sampler.join()
peak = max(peak, rss())
print(json.dumps({"before": before, "peak": peak, "after": rss(), **report.counts()}))
"""

MB = 1024 * 1024


def orchestrate_measuring_rss(url: str) -> dict[str, int]:
    """Run the orchestrator in a process of its own; its resident memory before, at its peak
    (sampled every millisecond) and after, with the run's counts."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE_RSS, url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    print(f"RSS before {figures['before'] / MB:.1f} MB, peak {figures['peak'] / MB:.1f} MB")
    return figures


def test_five_10_mb_rows_are_failed_unloaded_and_the_orchestrator_stays_small(herald_db):
    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' FROM generate_series(1, 7)")
    sql(herald_db, "UPDATE classes SET title = repeat('x', 10 * 1024 * 1024) WHERE id <= 5")
    sql(herald_db, "UPDATE classes SET seats = 1 WHERE id > 5")

    figures = orchestrate_measuring_rss(herald_db)

    assert (figures["failed"], figures["routed"]) == (5, 2)
    assert figures["peak"] - figures["before"] < 60 * MB  # they were loaded whole: +120 MB
    failures = sql(herald_db, "SELECT id, error FROM herald.change_log WHERE outcome = 'failed'")
    assert [f["id"] for f in failures] == [8, 9, 10, 11, 12]
    assert failures[0]["error"] == (
        "change 8 is too large: new_row is 10.5 MB (10.5 MB of row data in all), over the "
        "1 MB limit ([limits] max_change_bytes); not loaded or sent"
    )


def test_rows_within_the_limit_are_routed_without_being_loaded_whatever_they_hold(herald_db):
    # 900 kB of tiny objects each: about 20 MB apiece once decoded into Python dicts.
    sql(herald_db, "ALTER TABLE classes ADD COLUMN extra jsonb")
    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' FROM generate_series(1, 10)")
    sql(
        herald_db,
        "UPDATE classes SET extra = (SELECT jsonb_agg(jsonb_build_object('a', 1)) "
        "FROM generate_series(1, 90000))",
    )

    figures = orchestrate_measuring_rss(herald_db)

    assert (figures["routed"], figures["failed"]) == (10, 0)
    assert figures["peak"] - figures["before"] < 60 * MB  # decoded, they took +200 MB


def test_the_size_limit_is_configurable(herald_db, pool):
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a'), ('b')")
    sql(herald_db, "UPDATE classes SET title = repeat('x', 3000) WHERE id = 1")
    sql(herald_db, "UPDATE classes SET title = 'short' WHERE id = 2")
    raw = {**ROUTES, "limits": {"max_change_bytes": 2000}}

    report = run_orchestrator(pool, make_settings(herald_db, raw), RecordingPublisher())

    assert (report.routed, report.failed) == (1, 1)
    assert "new_row is 3.1 kB" in outcomes(herald_db)[3][1]
    assert "over the 2 kB limit ([limits] max_change_bytes)" in outcomes(herald_db)[3][1]


@pytest.mark.parametrize(
    "limits",
    [{"max_change_depth": 0}, {"max_change_depth": 501}, {"max_change_bytes": 1.5}],
)
def test_limits_out_of_range_are_refused_at_start(limits):
    with pytest.raises(ConfigError, match=r"\[limits\] max_change_"):
        make_settings("postgresql://unused", {**ROUTES, "limits": limits})


# --- debounce: a cap on a notification's changes --------------------------------------------


def capped(cap: int) -> dict:
    raw = copy.deepcopy(ROUTES)
    raw["routes"][1].update(debounce_seconds=600)
    raw["orchestrator"] = {"max_changes_per_notification": cap}
    return raw


def live_notifications(url):
    """Change ids of each notification whose jobs were not superseded, oldest first."""
    rows = sql(
        url,
        "SELECT n.change_ids FROM herald.notifications n WHERE EXISTS (SELECT 1 FROM "
        "herald.jobs j WHERE j.notification_id = n.id AND j.status <> 'superseded') ORDER BY n.id",
    )
    return [r["change_ids"] for r in rows]


def test_a_row_changed_past_the_cap_starts_a_new_notification_and_no_change_is_dropped(
    herald_db, pool
):
    settings = make_settings(herald_db, capped(5))
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 0)")  # change 1: skipped
    for seats in range(1, 13):
        sql(herald_db, "UPDATE classes SET seats = %s", (seats,))  # changes 2 to 13
    run_orchestrator(pool, settings, RecordingPublisher())
    assert live_notifications(herald_db) == [[2, 3, 4, 5, 6], [7, 8, 9, 10, 11], [12, 13]]

    for seats in range(13, 17):
        sql(herald_db, "UPDATE classes SET seats = %s", (seats,))  # changes 14 to 17
    run_orchestrator(pool, settings, RecordingPublisher())
    assert live_notifications(herald_db) == [
        [2, 3, 4, 5, 6],
        [7, 8, 9, 10, 11],
        [12, 13, 14, 15, 16],  # the open one filled up first
        [17],
    ]
    jobs = sql(
        herald_db,
        "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) AS n "
        "FROM herald.jobs",
    )[0]
    assert jobs["pending"] == 4 * 2  # two recipients per live notification


def test_the_cap_defaults_to_the_changes_one_email_lists():
    from herald.email.render import MAX_CHANGES

    assert make_settings("postgresql://unused").orchestrator.max_changes_per_notification == (
        MAX_CHANGES
    )
