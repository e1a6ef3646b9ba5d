"""The exporter (`herald metrics serve`) on a real PostgreSQL: a flood of scrapes costs the
database one connection, and the figures stay right."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.exporter import APPLICATION_NAME, LedgerCollector, serve
from tests.helpers import make_settings, sql
from tests.services import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def exporter(herald_db) -> Iterator[str]:
    """`herald metrics serve`'s server in this process; yields its /metrics URL."""
    stop = threading.Event()
    bound: list[int] = []  # the port, once listening
    thread = threading.Thread(
        target=serve,
        args=(make_settings(herald_db), "127.0.0.1", 0),
        kwargs={"stop": stop, "ready": bound.append},
        daemon=True,
    )
    thread.start()
    assert wait_until(lambda: bool(bound), timeout=10)
    yield f"http://127.0.0.1:{bound[0]}/metrics"
    stop.set()
    thread.join(timeout=10)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (our own server)
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def exporter_connections(url: str) -> int:
    [row] = sql(
        url,
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = %s",
        (APPLICATION_NAME,),
    )
    return int(row["n"])


def add_jobs(url: str, status: str, n: int) -> None:
    sql(
        url,
        "INSERT INTO herald.notifications (route, table_name, change_ids, recipients) "
        "VALUES ('r', 't', '{}', '{}')",
    )
    sql(
        url,
        "INSERT INTO herald.jobs (message_id, actor, queue, notification_id, status) "
        "SELECT gen_random_uuid(), 'send_email', 'email', "
        "(SELECT max(id) FROM herald.notifications), %s FROM generate_series(1, %s)",
        (status, n),
    )


def test_two_hundred_concurrent_scrapes_use_one_connection_and_report_the_ledger(
    herald_db, exporter
):
    add_jobs(herald_db, "pending", 7)
    add_jobs(herald_db, "failed", 3)
    peak = [0]
    stop = threading.Event()

    def watch() -> None:  # the most exporter connections PostgreSQL saw during the flood
        while not stop.is_set():
            peak[0] = max(peak[0], exporter_connections(herald_db))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=200) as flood:
            results = list(flood.map(lambda _: scrape(exporter), range(200)))
    finally:
        stop.set()
        watcher.join(timeout=5)
    print(f"\n200 concurrent scrapes: at most {peak[0]} exporter connection(s)")
    assert 1 <= peak[0] <= 2
    assert exporter_connections(herald_db) == 1  # kept for the next scrape
    labels = (("actor", "send_email"), ("queue", "email"))
    for figures in results:
        assert figures[("herald_exporter_up", ())] == 1.0
        assert figures[("herald_jobs_pending", labels)] == 7.0
        assert figures[("herald_jobs", (*labels[:1], *labels[1:], ("status", "failed")))] == 3.0


def test_scrapes_a_second_apart_see_new_figures_and_a_restart_costs_one_failed_read(
    herald_db, postgres_server
):
    now = [100.0]
    collector = LedgerCollector.for_url(herald_db, clock=lambda: now[0])
    try:
        first = collector.snapshot()
        add_jobs(herald_db, "pending", 2)
        assert collector.snapshot() is first  # within the second: the same figures
        assert collector.reads == 1
        now[0] += 1.0
        assert collector.snapshot().pending.get("send_email") == 2.0
        # The connection is cut (as a database restart would): one failed read, then back.
        sql(
            herald_db,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (APPLICATION_NAME,),
        )
        now[0] += 1.0
        assert collector.snapshot().up is False
        now[0] += 1.0
        again = collector.snapshot()
        assert again.up is True and again.pending.get("send_email") == 2.0
        assert exporter_connections(herald_db) == 1
    finally:
        collector.close()
