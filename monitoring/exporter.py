"""The exporter (`herald metrics serve`): ledger gauges read from PostgreSQL at scrape time.

One process computes what no worker can see: pending jobs per actor (delayed ones
included), jobs by status, the age of the oldest due job, the change-log backlog, the
orchestrator's last success and the circuit breakers. Each scrape runs one query
(``monitoring/sql/metrics.sql``) on a fresh connection, so the figures are always
current, survive worker restarts, and a database restart costs one failed scrape.

A failed read exports ``herald_exporter_up 0`` and nothing else, never stale zeros
(see ``monitoring.metrics.exporter_families``).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from psycopg.rows import dict_row

from herald.config import Settings
from monitoring import metrics as catalogue
from monitoring.sql import metrics_queries

logger = logging.getLogger(__name__)

#: Seconds to wait for a connection; Prometheus' scrape timeout is 10 s in our config.
CONNECT_TIMEOUT = 5
#: Longest the snapshot query may run (milliseconds).
STATEMENT_TIMEOUT_MS = 5000


def read_snapshot(conn: psycopg.Connection[Any]) -> catalogue.ExporterSnapshot:
    """Everything one scrape exports, from one query (two if breakers exist)."""
    snapshot = catalogue.ExporterSnapshot()
    actors = dict(catalogue.KNOWN_ACTORS)
    rows = conn.execute(metrics_queries["exporter_snapshot"]).fetchall()
    breakers_table = False
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
    if breakers_table:
        for row in conn.execute(metrics_queries["circuit_breakers"]).fetchall():
            snapshot.breakers_open[row["breaker"]] = bool(row["open"])
    snapshot.actors = actors
    return snapshot


class LedgerCollector:
    """A prometheus_client custom collector reading the ledger on every ``collect()``."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]]) -> None:
        self.connect = connect

    @classmethod
    def for_url(cls, database_url: str) -> LedgerCollector:
        def connect() -> psycopg.Connection[Any]:
            return psycopg.connect(
                database_url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=CONNECT_TIMEOUT,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                application_name="herald-exporter",
            )

        return cls(connect)

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        try:
            with self.connect() as conn:
                snapshot = read_snapshot(conn)
        except psycopg.Error as error:
            logger.error("Exporter could not read PostgreSQL: %s", error)
            snapshot = catalogue.ExporterSnapshot(up=False)
        snapshot.scrape_duration = time.perf_counter() - started
        yield from catalogue.exporter_families(snapshot)

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
    registry.register(LedgerCollector.for_url(settings.database_url))
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
