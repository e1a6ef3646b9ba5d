"""The digest scheduler with an injected clock, on a real PostgreSQL and the StubBroker.

A route in digest mode collects its notifications per recipient; the minute tick
(herald/digests/collect.py) claims what is due. After two days down it sends one digest;
two schedulers at once send one; a crash between claim and publish is sent once by the
sweeper; nothing new sends nothing and still advances; a change after a digest goes into
the next one; a muted recipient gets nothing.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from herald.digests import store
from herald.digests.collect import run_tick
from herald.recipients import mute
from herald.schedules import zone
from orchestrator.sweep import sweep
from tests.helpers import ROUTES, make_settings, sql

pytestmark = pytest.mark.integration

SAST = zone("Africa/Johannesburg")
DIGEST_ROUTE = {
    "name": "class-digest",
    "table": "classes",
    "operations": ["INSERT", "UPDATE"],
    "recipients": ["Ops <ops@example.com>", "lead@example.com"],
    "mode": "digest",
    "digest": "daily 09:00",
    "digest_timezone": "Africa/Johannesburg",
}


def digest_settings(url: str, **route: Any) -> Any:
    raw = {**ROUTES, "routes": [{**DIGEST_ROUTE, **route}], "orchestrator": {
        "republish_after_seconds": 0}}  # fmt: skip
    return make_settings(url, raw)


@pytest.fixture
def digests(stub_pipeline, herald_db):
    stub_pipeline.use(settings=digest_settings(herald_db))
    return stub_pipeline


def add_classes(url: str, n: int, start: int = 1) -> None:
    sql(url, "INSERT INTO classes (title, seats) SELECT 'Class ' || i, i "
             "FROM generate_series(%s::int, %s::int) AS i", (start, start + n - 1))  # fmt: skip


def tick(pipeline, at: datetime, publish: Any = None) -> Any:
    return run_tick(pipeline.pool, pipeline.settings, publish or pipeline.publish, now=lambda: at)


def runs(url: str) -> list[dict[str, Any]]:
    return sql(url, "SELECT * FROM herald.digest_runs ORDER BY recipient, period_end")


def counters(url: str) -> dict[tuple[str, str], float]:
    return {
        (r["metric"], r["label"]): r["value"] for r in sql(url, "SELECT * FROM herald.counters")
    }


def sent_to(pipeline) -> list[str]:
    return sorted(m.to_addrs[0] for m in pipeline.mailer.sent)


def test_a_digest_route_collects_its_changes_instead_of_emailing_them(digests, herald_db):
    add_classes(herald_db, 30)
    digests.orchestrate()

    assert digests.mailer.sent == []
    assert sql(herald_db, "SELECT count(*) AS n FROM herald.jobs")[0]["n"] == 0
    items = sql(
        herald_db,
        "SELECT recipient, count(*) AS n FROM herald.digest_items "
        "WHERE run_id IS NULL GROUP BY recipient ORDER BY recipient",
    )
    assert items == [{"recipient": "lead@example.com", "n": 30},
                     {"recipient": "ops@example.com", "n": 30}]  # fmt: skip


def test_after_two_days_down_one_digest_covers_everything_since_the_last(digests, herald_db):
    add_classes(herald_db, 30)
    digests.orchestrate()
    now = datetime.now(UTC)
    assert tick(digests, now).created == 2  # each recipient gets the route's calendar
    first_due = store.due_after("daily 09:00", "Africa/Johannesburg", now)
    assert first_due.astimezone(SAST).strftime("%H:%M") == "09:00"

    down = first_due + timedelta(days=2, minutes=3)  # two due times missed, the third passed
    report = tick(digests, down)
    digests.drain()

    assert (report.claimed, report.jobs) == (2, 2)
    assert sent_to(digests) == ["lead@example.com", "ops@example.com"]
    (lead, ops) = runs(herald_db)
    assert lead["period_end"] == first_due + timedelta(days=2)
    assert lead["items"] == ops["items"] == 30 and lead["status"] == "sent"
    schedules = sql(herald_db, "SELECT next_due_at, cursor_at FROM herald.digest_schedules")
    assert {s["next_due_at"] for s in schedules} == {first_due + timedelta(days=3)}
    assert {s["cursor_at"] for s in schedules} == {first_due + timedelta(days=2)}
    email = digests.mailer.sent[0].message
    body = email.get_body(("plain",)).get_content()
    assert body.count(" · change #") == 20 and "and 10 more changes" in body
    first = next(line for line in body.splitlines() if line.startswith("1. "))
    assert '"Class 30"' in first  # newest first
    assert email["Message-ID"] == lead["message_id_header"] or email["Message-ID"] == ops[
        "message_id_header"]  # fmt: skip

    # The next tick has nothing due; the next due time with nothing new sends nothing.
    assert tick(digests, down).claimed == 0
    quiet = tick(digests, first_due + timedelta(days=3, seconds=1))
    digests.drain()
    assert (quiet.claimed, quiet.empty, len(digests.mailer.sent)) == (2, 2, 2)
    assert counters(herald_db)[("digests_skipped", "empty")] == 2
    assert counters(herald_db)[("digests_sent", "")] == 2
    assert {s["next_due_at"] for s in sql(herald_db, "SELECT next_due_at FROM "
            "herald.digest_schedules")} == {first_due + timedelta(days=4)}  # fmt: skip


def test_two_schedulers_at_once_send_one_digest_per_recipient(digests, herald_db):
    add_classes(herald_db, 5)
    digests.orchestrate()
    now = datetime.now(UTC)
    tick(digests, now)
    due = store.due_after("daily 09:00", "Africa/Johannesburg", now) + timedelta(minutes=1)

    start = threading.Barrier(2)
    reports = []

    def scheduler() -> None:
        start.wait()
        reports.append(tick(digests, due))

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    digests.drain()

    assert sum(r.jobs for r in reports) == 2
    assert len(runs(herald_db)) == 2
    assert sent_to(digests) == ["lead@example.com", "ops@example.com"]


def test_a_crash_between_claim_and_publish_is_sent_once_by_the_sweeper(digests, herald_db):
    add_classes(herald_db, 3)
    digests.orchestrate()
    now = datetime.now(UTC)
    tick(digests, now)
    due = store.due_after("daily 09:00", "Africa/Johannesburg", now) + timedelta(minutes=1)

    def crashed(refs):  # the process died right after the commit
        raise ConnectionError("worker killed before publishing")

    report = tick(digests, due, publish=crashed)
    assert report.jobs == 2 and report.published == 0 and report.errors
    digests.drain()
    assert digests.mailer.sent == []

    swept = sweep(digests.pool, digests.settings, digests.publish)
    digests.drain()
    assert swept.unpublished == 2
    assert sent_to(digests) == ["lead@example.com", "ops@example.com"]
    # Nothing is left to publish, and the period is never claimed again.
    assert sweep(digests.pool, digests.settings, digests.publish).unpublished == 0
    assert tick(digests, due).claimed == 0
    digests.drain()
    assert len(digests.mailer.sent) == 2


def test_a_message_delivered_twice_sends_the_digest_once(digests, herald_db):
    add_classes(herald_db, 3)
    digests.orchestrate()
    now = datetime.now(UTC)
    tick(digests, now)
    tick(digests, store.due_after("daily 09:00", "Africa/Johannesburg", now))
    digests.drain()
    job = sql(herald_db, "SELECT id FROM herald.jobs ORDER BY id LIMIT 1")[0]["id"]
    sql(herald_db, "UPDATE herald.jobs SET status = 'pending' WHERE id = %s", (job,))
    digests.actors.send_digest.send(job)  # redelivered after it was sent
    digests.drain()
    assert len(digests.mailer.sent) == 2
    assert sql(herald_db, "SELECT status FROM herald.jobs WHERE id = %s", (job,)) == [
        {"status": "complete"}]  # fmt: skip


def test_a_change_after_the_digest_goes_into_the_next_period(digests, herald_db):
    add_classes(herald_db, 4)
    digests.orchestrate()
    tick(digests, datetime.now(UTC))
    # Due now (as a schedule whose time just came): the period ends at this instant.
    sql(herald_db, "UPDATE herald.digest_schedules SET next_due_at = clock_timestamp()")
    tick(digests, datetime.now(UTC))
    digests.drain()
    assert [r["items"] for r in runs(herald_db)] == [4, 4]

    add_classes(herald_db, 2, start=5)  # after the digest
    digests.orchestrate()
    sql(herald_db, "UPDATE herald.digest_schedules SET next_due_at = clock_timestamp()")
    tick(digests, datetime.now(UTC))
    digests.drain()

    second = [r for r in runs(herald_db) if r["items"] == 2]
    assert len(second) == 2 and len(digests.mailer.sent) == 4
    latest = digests.mailer.sent[-1].message.get_body(("plain",)).get_content()
    assert "Class 5" in latest and "Class 6" in latest and "Class 4" not in latest


def test_a_muted_recipient_gets_no_digest(digests, herald_db, pool):
    add_classes(herald_db, 3)
    digests.orchestrate()  # items for both recipients
    with pool.connection() as conn:
        mute(conn, "ops@example.com", "class-digest")  # muted after the items were written
    add_classes(herald_db, 2, start=4)
    digests.orchestrate()  # no items for ops any more: skipped, with the reason
    now = datetime.now(UTC)
    tick(digests, now)
    report = tick(digests, store.due_after("daily 09:00", "Africa/Johannesburg", now))
    digests.drain()

    assert sent_to(digests) == ["lead@example.com"]
    assert report.muted == 1
    assert counters(herald_db)[("digests_skipped", "muted")] == 1
    skips = sql(herald_db, "SELECT recipient, reason FROM herald.recipient_skips")
    assert skips == [{"recipient": "ops@example.com", "reason": "muted"}] * 2
    assert counters(herald_db)[("recipients_skipped", "muted")] == 2


def test_a_recipients_own_schedule_and_timezone_override_the_routes(digests, herald_db, pool):
    add_classes(herald_db, 2)
    digests.orchestrate()
    now = datetime(2030, 3, 1, 12, tzinfo=UTC)
    kathmandu = zone("Asia/Kathmandu")

    def change(at: datetime, **what: Any) -> dict[str, Any]:
        with pool.connection() as conn:
            return store.set_schedule(conn, digests.settings, "class-digest", "ops@example.com",
                                      store.Change(**what), at)  # fmt: skip

    got = change(now, schedule="weekly mon 08:30", timezone="Asia/Kathmandu")
    due = got["next_due_at"]
    assert due.astimezone(kathmandu).isoformat() == "2030-03-04T08:30:00+05:45"
    assert (got["schedule"], got["own_schedule"]) == ("weekly mon 08:30", "weekly mon 08:30")

    # Paused: not due. Resumed: due again, from the next Monday on.
    assert change(now, paused=True)["paused"]
    assert tick(digests, due + timedelta(minutes=1)).claimed == 0
    resumed = change(due + timedelta(minutes=1), paused=False)
    assert resumed["next_due_at"] == due + timedelta(days=7)
    tick(digests, resumed["next_due_at"] + timedelta(minutes=1))
    digests.drain()
    assert {r["recipient"]: r["items"] for r in runs(herald_db)} == {
        "ops@example.com": 2, "lead@example.com": 2}  # fmt: skip

    # Deleting the recipient's own schedule: back to the route's calendar and timezone.
    with pool.connection() as conn:
        back = store.delete_schedule(conn, digests.settings, got["id"], now)
    assert back is not None and (back["schedule"], back["timezone"], back["own_schedule"]) == (
        "daily 09:00", "Africa/Johannesburg", None)  # fmt: skip


def test_an_operation_filter_leaves_the_other_changes_out(digests, herald_db, pool):
    add_classes(herald_db, 3)
    sql(herald_db, "UPDATE classes SET seats = seats + 1 WHERE id = 1")
    digests.orchestrate()
    now = datetime.now(UTC)
    with pool.connection() as conn:
        store.set_schedule(conn, digests.settings, "class-digest", "ops@example.com",
                           store.Change(operations=["UPDATE"]), now)  # fmt: skip
    tick(digests, now)
    tick(digests, store.due_after("daily 09:00", "Africa/Johannesburg", now))
    digests.drain()
    by_recipient = {r["recipient"]: r["items"] for r in runs(herald_db)}
    assert by_recipient == {"ops@example.com": 1, "lead@example.com": 4}


def test_the_exporter_reads_digests_sent_skipped_items_and_lateness(digests, herald_db):
    from prometheus_client import CollectorRegistry

    from herald.db import connect
    from monitoring import metrics
    from monitoring.exporter import read_snapshot

    add_classes(herald_db, 30)
    digests.orchestrate()
    now = datetime.now(UTC)
    tick(digests, now)
    due = store.due_after("daily 09:00", "Africa/Johannesburg", now)
    # One schedule an hour and a half overdue, not claimed yet: the most overdue digest.
    sql(herald_db, "UPDATE herald.digest_schedules SET next_due_at = now() - interval '90 min' "
                   "WHERE recipient = 'lead@example.com'")  # fmt: skip
    with connect(herald_db, autocommit=True) as conn:
        late = read_snapshot(conn).digest_lateness
    assert 5390 < late < 5500

    tick(digests, due)
    digests.drain()
    tick(digests, due + timedelta(days=1))  # nothing new: empty
    registry = CollectorRegistry()
    with connect(herald_db, autocommit=True) as conn:
        registry.register(metrics.SnapshotCollector(read_snapshot(conn)))
    value = registry.get_sample_value
    assert value("herald_digests_sent_total") == 2
    assert value("herald_digests_skipped_total", {"reason": "empty"}) == 2
    assert value("herald_digests_skipped_total", {"reason": "muted"}) == 0
    assert value("herald_digest_items_count") == 2 and value("herald_digest_items_sum") == 60
    assert value("herald_digest_items_bucket", {"le": "20"}) == 0
    assert value("herald_digest_items_bucket", {"le": "50"}) == 2
    lateness = value("herald_digest_lateness_seconds")
    assert lateness is not None and lateness < 60


def test_retention_removes_old_digest_periods_with_their_items_and_notifications(
    digests, herald_db, pool
):
    from herald.recipients import mute
    from herald.retention import purge

    with pool.connection() as conn:
        mute(conn, "lead@example.com", "class-digest")
    add_classes(herald_db, 3)
    digests.orchestrate()
    now = datetime.now(UTC)
    tick(digests, now)
    tick(digests, store.due_after("daily 09:00", "Africa/Johannesburg", now))
    digests.drain()
    add_classes(herald_db, 1, start=4)  # waiting for the next period: kept
    digests.orchestrate()
    old = "now() - interval '40 days'"
    sql(herald_db, f"UPDATE herald.digest_runs SET sent_at = {old}, created_at = {old}")
    sql(herald_db, f"UPDATE herald.change_log SET claimed_at = {old} WHERE id <= 3")
    sql(herald_db, f"UPDATE herald.jobs SET finished_at = {old}, created_at = {old}")
    sql(herald_db, f"UPDATE herald.recipient_skips SET created_at = {old} WHERE change_id <= 3")

    report = purge(pool, timedelta(days=30))

    assert (report.digest_runs, report.notifications, report.recipient_skips) == (1, 3, 3)
    assert report.changes == 3 and report.jobs == 1
    left = sql(herald_db, "SELECT recipient, run_id FROM herald.digest_items")
    assert left == [{"recipient": "ops@example.com", "run_id": None}]
    assert len(sql(herald_db, "SELECT id FROM herald.notifications")) == 1
