"""Debounce: changes to one row inside the window become one notification listing them all."""

from __future__ import annotations

import copy
import time

import pytest

from tests.helpers import ROUTES, make_settings, sql


def debounced(window: int, window_max: int | None = None):
    raw = copy.deepcopy(ROUTES)
    raw["orchestrator"] = {"batch_size": 50}  # 51 changes are claimed in two batches
    raw["routes"][1].update(debounce_seconds=window)
    if window_max is not None:
        raw["routes"][1].update(debounce_max_seconds=window_max)
    return raw


@pytest.fixture
def pipeline(stub_pipeline, herald_db):
    def configure(window, window_max=None):
        stub_pipeline.use(settings=make_settings(herald_db, debounced(window, window_max)))
        return stub_pipeline

    return configure


def statuses(url):
    rows = sql(url, "SELECT status, count(*) AS n FROM herald.jobs GROUP BY 1")
    return {r["status"]: r["n"] for r in rows}


def test_fifty_changes_to_one_row_inside_the_window_become_one_email_listing_fifty(
    herald_db, pipeline
):
    p = pipeline(window=1)
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 0)")
    for seats in range(1, 51):
        sql(herald_db, "UPDATE classes SET seats = %s", (seats,))
    p.orchestrate()  # two batches of the change log: folded, nothing due yet
    assert p.mailer.sent == []
    assert statuses(herald_db) == {"pending": 2, "superseded": 2}  # two recipients

    time.sleep(1.2)  # the row has been quiet for the window
    p.orchestrate()
    assert len(p.mailer.sent) == 2
    for sent in p.mailer.sent:
        assert len(sent.message["X-Herald-Change-Id"].split(",")) == 50
    assert statuses(herald_db) == {"complete": 2, "superseded": 2}


def test_constant_churn_still_sends_after_the_maximum_window(herald_db, pipeline):
    p = pipeline(window=2, window_max=2)
    sql(herald_db, "INSERT INTO classes (title, seats) VALUES ('Yoga', 0)")
    sql(herald_db, "UPDATE classes SET seats = 1")
    p.orchestrate()
    time.sleep(1.2)
    sql(herald_db, "UPDATE classes SET seats = 2")  # still churning: the quiet window restarts
    p.orchestrate()
    assert p.mailer.sent == []
    time.sleep(1.0)  # quiet for only 1 s, but 2.2 s since the first change
    p.orchestrate()
    assert len(p.mailer.sent) == 2
    assert p.mailer.sent[0].message["X-Herald-Change-Id"] == "2,3"


def test_different_rows_are_debounced_apart(herald_db, pipeline):
    p = pipeline(window=1)
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a'), ('b')")
    sql(herald_db, "UPDATE classes SET seats = 1")
    p.orchestrate()
    time.sleep(1.2)
    p.orchestrate()
    assert len(p.mailer.sent) == 4


def test_a_due_time_lives_in_the_ledger_not_in_the_broker(herald_db, pipeline):
    p = pipeline(window=600)
    sql(herald_db, "INSERT INTO classes (title) VALUES ('a')")
    sql(herald_db, "UPDATE classes SET seats = 1")
    p.orchestrate()
    rows = sql(herald_db, "SELECT published_at, eta > now() AS future FROM herald.jobs")
    assert all(r["published_at"] is None and r["future"] for r in rows)
    assert p.broker.queues["email"].qsize() == 0 and p.broker.queues["email.DQ"].qsize() == 0
