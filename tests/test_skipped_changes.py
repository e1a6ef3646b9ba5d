"""Nothing dropped without a trace: a change that becomes no notification is counted by
reason (the exporter's herald_changes_not_routed, `herald stats`), and the orchestrator's
log says when a tracked table has no route or a route's table is not tracked."""

from __future__ import annotations

import logging

import pytest

from herald.cli.stats import format_stats
from herald.db import connect
from monitoring.exporter import read_snapshot
from monitoring.metrics import CHANGES_NOT_ROUTED, ExporterSnapshot, exporter_families
from monitoring.stats import stats as ledger_stats
from orchestrator import coverage
from orchestrator.coverage import find_gaps
from orchestrator.orchestrate import run_orchestrator
from tests.helpers import ROUTES, RecordingPublisher, make_settings, sql

#: The test routes, plus one with nobody to write to.
NO_RECIPIENTS = {
    **ROUTES,
    "routes": [
        *ROUTES["routes"],
        {"name": "nobody", "table": "members", "operations": ["UPDATE"], "recipients": []},
    ],
}


@pytest.fixture
def orchestrated(herald_db, pool):
    """Changes of every kind that go nowhere, orchestrated once."""
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")  # no INSERT route on classes
    sql(herald_db, "DELETE FROM classes")  # no DELETE route either
    sql(herald_db, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org')")
    sql(herald_db, "UPDATE members SET note = 'vip'")  # route 'nobody': no recipients
    report = run_orchestrator(pool, make_settings(herald_db, NO_RECIPIENTS), RecordingPublisher())
    assert (report.routed, report.skipped) == (1, 3)
    return herald_db


def test_stats_count_skipped_changes_by_reason(orchestrated):
    with connect(orchestrated, autocommit=True) as conn:
        stats = ledger_stats(conn)
    assert stats["skipped_changes"] == {
        "total": 3,
        "by_reason": {"no_route": 2, "no_recipients": 1},
    }
    assert stats["failed_changes"] == {"total": 0, "by_reason": {"over_limit": 0, "malformed": 0}}
    text = format_stats(stats)
    assert "skipped changes: 3 (no route 2, no recipients 1)" in text
    assert "failed changes: 0 (over limit 0, malformed 0)" in text


def test_the_exporter_counts_them_by_outcome_and_reason(orchestrated):
    with connect(orchestrated, autocommit=True) as conn:
        snapshot = read_snapshot(conn)
    family = next(f for f in exporter_families(snapshot) if f.name == CHANGES_NOT_ROUTED)
    values = {(s.labels["outcome"], s.labels["reason"]): s.value for s in family.samples}
    assert values == {
        ("skipped", "no_route"): 2,
        ("skipped", "no_recipients"): 1,
        ("failed", "over_limit"): 0,
        ("failed", "malformed"): 0,
    }


def test_a_change_over_a_limit_is_counted_as_failed_over_limit(herald_db, pool):
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a')")
    sql(herald_db, "UPDATE classes SET title = repeat('x', 2000000)")  # over max_change_bytes
    run_orchestrator(pool, make_settings(herald_db), RecordingPublisher())
    with connect(herald_db, autocommit=True) as conn:
        stats = ledger_stats(conn)
    assert stats["failed_changes"]["by_reason"] == {"over_limit": 1, "malformed": 0}


def test_every_reason_is_exported_from_the_first_scrape():
    family = next(f for f in exporter_families(ExporterSnapshot()) if f.name == CHANGES_NOT_ROUTED)
    assert len(family.samples) == 4 and all(s.value == 0 for s in family.samples)


# -- the orchestrator's warning ------------------------------------------------------------


def test_gaps_are_tracked_tables_without_a_route_and_routes_on_untracked_tables():
    settings = make_settings("postgresql://unused/x")  # routes on members and classes
    gaps = find_gaps(settings.routes, ["public.members", "public.rooms"])
    assert gaps.unrouted_tables == ("public.rooms",)
    assert [r.name for r in gaps.untracked_routes] == ["classes"]
    assert gaps.messages() == [
        "tracked table public.rooms has no route: its changes are skipped "
        "(add a [[routes]] entry for it, or stop tracking it)",
        "route 'classes' names table 'classes', which is not tracked: it never sees a change "
        "(run `herald track classes`)",
    ]
    assert not find_gaps(settings.routes, ["public.members", "public.classes"])


def test_a_route_on_any_table_covers_every_tracked_table():
    settings = make_settings("postgresql://unused/x", {"routes": [{"recipients": ["a@b.co"]}]})
    assert not find_gaps(settings.routes, ["public.members", "audit.events"])


def test_the_orchestrator_warns_once_per_run_of_a_table_without_a_route(
    herald_db, pool, caplog, monkeypatch
):
    monkeypatch.setattr(coverage, "_recent", coverage._Recent())  # a fresh process
    sql(herald_db, "CREATE TABLE rooms (id int PRIMARY KEY); SELECT herald.track('rooms')")
    settings = make_settings(herald_db)
    with caplog.at_level(logging.WARNING, logger="orchestrator.coverage"):
        run_orchestrator(pool, settings, RecordingPublisher())
        run_orchestrator(pool, settings, RecordingPublisher())  # the same gap: not repeated
    warnings = [r.getMessage() for r in caplog.records if r.name == "orchestrator.coverage"]
    assert warnings == [
        "Changes with nowhere to go: tracked table public.rooms has no route: its changes are "
        "skipped (add a [[routes]] entry for it, or stop tracking it)"
    ]


def test_a_repeated_warning_waits_ten_minutes():
    recent = coverage._Recent()
    assert recent.due("gap", 0.0)
    assert not recent.due("gap", coverage.REPEAT_AFTER_SECONDS - 1)
    assert recent.due("gap", coverage.REPEAT_AFTER_SECONDS)
    assert recent.due("another gap", 1.0)
