"""The exporter (`herald metrics serve`): ledger gauges read from PostgreSQL at scrape time.

One process computes what no worker can see: pending jobs per actor (delayed ones
included), jobs by status, the age of the oldest due job, the change-log backlog, the
orchestrator's last success and the circuit breakers. A scrape runs one query
(``monitoring/sql/metrics.sql``) on the exporter's one connection, opened again after a
database restart (which costs one failed scrape); the figures are at most a second old,
however many scrapes come at once (see ``LedgerCollector``), and survive worker restarts.

A failed read exports ``herald_exporter_up 0`` and nothing else, never stale zeros
(see ``monitoring.metrics.exporter_families``).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric

from herald import db
from herald.config import Settings
from monitoring import metrics as catalogue
from monitoring.changes import read_not_routed
from monitoring.sql import metrics_queries

logger = logging.getLogger(__name__)

#: Seconds to wait for a connection; Prometheus' scrape timeout is 10 s in our config.
CONNECT_TIMEOUT = 5
#: Longest the snapshot query may run (milliseconds).
STATEMENT_TIMEOUT_MS = 5000
#: Scrapes within this many seconds of a read are served its figures.
CACHE_SECONDS = 1.0
#: How the exporter's connection shows in pg_stat_activity.
APPLICATION_NAME = "herald-exporter"


def read_snapshot(conn: psycopg.Connection[Any]) -> catalogue.ExporterSnapshot:
    """Everything one scrape exports, from one query (two if breakers exist)."""
    snapshot = catalogue.ExporterSnapshot()
    actors = dict(catalogue.KNOWN_ACTORS)
    rows = conn.execute(metrics_queries["exporter_snapshot"]).fetchall()
    breakers_table = digests_tables = False
    for row in rows:
        kind, value = row["kind"], float(row["value"] or 0)
        if kind == "jobs":
            actor = row["actor"]
            actors.setdefault(actor, row["queue"])
            key = (actor, row["status"])
            snapshot.jobs[key] = snapshot.jobs.get(key, 0.0) + value
            if row["status"] == "pending":
                snapshot.pending[actor] = snapshot.pending.get(actor, 0.0) + value
        elif kind == "oldest":
            snapshot.oldest_pending_age[row["actor"]] = value
        elif kind == "unclaimed":
            snapshot.changes_unclaimed = value
        elif kind == "last_success":
            snapshot.orchestrator_last_success = value
        elif kind == "breakers":
            breakers_table = bool(value)
        elif kind == "digests":
            digests_tables = bool(value)
    if breakers_table:
        for row in conn.execute(metrics_queries["circuit_breakers"]).fetchall():
            snapshot.breakers_open[row["breaker"]] = bool(row["open"])
    snapshot.changes_not_routed = {k: float(v) for k, v in read_not_routed(conn).items()}
    if digests_tables:  # counters and the digest lateness (monitoring/digest_metrics.py)
        for row in conn.execute(metrics_queries["digest_figures"]).fetchall():
            if row["kind"] == "lateness":
                snapshot.digest_lateness = float(row["value"] or 0)
            else:
                snapshot.ledger_counters[(row["metric"], row["label"])] = float(row["value"])
    snapshot.actors = actors
    return snapshot


class LedgerCollector:
    """A prometheus_client custom collector serving the ledger's figures.

    The server answers each scrape on a thread of its own, so a flood of scrapes must not
    become a flood of connections: one connection is kept and reused (opened again when
    it breaks), one scrape at a time reads, and what it read serves every scrape of the
    next `cache_seconds` (a failed read too: a database that is down is not asked again
    by every waiting scrape).
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connect = connect
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._snapshot: catalogue.ExporterSnapshot | None = None
        self._read_at = 0.0
        #: Reads made (a scrape served from the cache makes none); for tests.
        self.reads = 0

    @classmethod
    def for_url(cls, database_url: str, **kwargs: Any) -> LedgerCollector:
        def connect() -> psycopg.Connection[Any]:
            # herald.db.connect: a refused URL's message never quotes its credentials.
            return db.connect(
                database_url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                application_name=APPLICATION_NAME,
            )

        return cls(connect, **kwargs)

    def snapshot(self) -> catalogue.ExporterSnapshot:
        """The ledger's figures: read now, or those read less than `cache_seconds` ago."""
        with self._lock:
            cached = self._snapshot
            if cached is not None and self.clock() - self._read_at < self.cache_seconds:
                return cached
            started = time.perf_counter()
            try:
                snapshot = read_snapshot(self._connection())
            except psycopg.Error as error:
                logger.error("Exporter could not read PostgreSQL: %s", error)
                self.close()  # broken or not: the next read starts on a new connection
                snapshot = catalogue.ExporterSnapshot(up=False)
            self.reads += 1
            snapshot.scrape_duration = time.perf_counter() - started
            self._snapshot, self._read_at = snapshot, self.clock()
            return snapshot

    def _connection(self) -> psycopg.Connection[Any]:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            self.close()
            conn = self._conn = self.connect()
        return conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def collect(self) -> Iterator[Metric]:
        yield from catalogue.exporter_families(self.snapshot())

    def describe(self) -> list[Metric]:
        # Names only, without touching the database at registration.
        return list(catalogue.exporter_families(catalogue.ExporterSnapshot()))


def serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    stop: threading.Event | None = None,
    ready: Callable[[int], None] | None = None,
) -> None:
    """Serve the ledger gauges on ``http://host:port/metrics`` until SIGTERM or SIGINT
    (or until ``stop`` is set). ``ready`` is called with the bound port once listening."""
    registry = CollectorRegistry()
    collector = LedgerCollector.for_url(settings.database_url)
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound = server.server_address[1]
    logger.info("Herald exporter serving http://%s:%d/metrics", host, bound)
    if ready is not None:
        ready(bound)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        collector.close()
