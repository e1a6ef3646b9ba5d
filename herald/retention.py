"""Retention: remove finished ledger rows, and what hangs off them, in small batches.

`herald jobs purge --older-than 30d` and the periodic `purge` actor both call `purge()`.
What goes, each kind in batches of `batch_size` rows, one short transaction per batch
(so locks stay short and autovacuum keeps up: the tables never bloat):

- notifications created before the cutoff whose jobs are *all* finished (complete,
  canceled, superseded; failed too only with `include_failed`) before it, together with
  those jobs, their summary and their deliveries;
- finished jobs that belong to no notification;
- digest periods finished before the cutoff (sent, empty, muted; failed only with
  `include_failed`), with their items and the digest notifications none still waits for;
  and the reasons recipients were skipped (herald.recipient_skips);
- change-log rows claimed before the cutoff whose outcome is set and that no remaining
  notification lists (so a kept failed job can still be retried and rendered);
- the orchestrator's run log older than the cutoff.

Open jobs (pending, running) are never touched, and neither is anything they need.
Failed jobs are kept until purged explicitly (`--include-failed`): the periodic purge
never passes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from herald import db
from herald.db import DictConnection
from herald.sql import queries

#: Statuses of finished jobs the purge removes; `failed` only on request.
FINISHED = ("complete", "canceled", "superseded")
DEFAULT_BATCH_SIZE = 5_000

_AGE = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNIT_SECONDS = {"d": 86_400, "h": 3_600, "m": 60}


def parse_age(text: str) -> timedelta:
    """`30d`, `12h`, `90m` -> a timedelta; ValueError names what is accepted."""
    match = _AGE.match(text or "")
    if not match:
        raise ValueError(
            f"invalid age {text!r}: use a whole number of days, hours or minutes "
            "(e.g. 30d, 12h, 90m)"
        )
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


@dataclass
class PurgeReport:
    """Rows removed, by table; `complete` is False when the time budget ran out first."""

    notifications: int = 0
    jobs: int = 0
    summaries: int = 0
    deliveries: int = 0
    changes: int = 0
    orchestrator_runs: int = 0
    digest_runs: int = 0
    recipient_skips: int = 0
    batches: int = 0
    complete: bool = True
    cutoff: datetime | None = None

    def counts(self) -> dict[str, int]:
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("batches", "complete", "cutoff")
        }

    @property
    def total(self) -> int:
        return sum(self.counts().values())


def purge(
    target: ConnectionPool[Any] | psycopg.Connection[Any],
    older_than: timedelta,
    *,
    include_failed: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_runtime: float | None = None,
) -> PurgeReport:
    """Purge what finished more than `older_than` ago; see the module docstring.

    `target` is a pool or a connection with no transaction open (autocommit, as the CLI
    uses): every batch commits on its own. With `max_runtime`, stops between batches once
    the budget is spent (`report.complete` is then False; the next run carries on).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if older_than < timedelta(0):
        raise ValueError("older_than must not be negative")
    if isinstance(target, ConnectionPool):
        with db.connection(target) as conn:
            conn.commit()  # the pool hands out idle connections; be sure none is open
            return _purge(conn, older_than, include_failed, batch_size, max_runtime)
    return _purge(target, older_than, include_failed, batch_size, max_runtime)


def _purge(
    conn: DictConnection,
    older_than: timedelta,
    include_failed: bool,
    batch_size: int,
    max_runtime: float | None,
) -> PurgeReport:
    deadline = None if max_runtime is None else time.monotonic() + max_runtime
    statuses = [*FINISHED, "failed"] if include_failed else list(FINISHED)
    report = PurgeReport()
    with conn.transaction():
        cutoff = conn.execute(
            queries["retention_cutoff"], {"seconds": older_than.total_seconds()}
        ).fetchone()
    assert cutoff is not None  # a SELECT without FROM returns one row
    report.cutoff = cutoff["cutoff"]
    params = {"cutoff": report.cutoff, "statuses": statuses, "limit": batch_size}

    def out_of_time() -> bool:
        if deadline is not None and time.monotonic() >= deadline:
            report.complete = False
            return True
        return False

    # Notifications first: the change-log rows they list become free to go after them.
    while not out_of_time():
        with conn.transaction():
            row = conn.execute(queries["purge_notifications"], params).fetchone()
        assert row is not None  # its final SELECT has no FROM: one row
        report.batches += 1
        for name in ("notifications", "jobs", "summaries", "deliveries"):
            setattr(report, name, getattr(report, name) + row[name])
        if row["notifications"] < batch_size:
            break

    _purge_digests(conn, params, report, out_of_time)

    report.jobs += _delete_in_batches(conn, "purge_orphan_jobs", params, report, out_of_time)

    after = 0
    while not out_of_time():
        with conn.transaction():
            row = conn.execute(queries["purge_changes"], {**params, "after": after}).fetchone()
        assert row is not None  # its final SELECT has no FROM: one row
        report.batches += 1
        report.changes += row["deleted"]
        if row["last_id"] is None:
            break
        after = row["last_id"]

    report.orchestrator_runs += _delete_in_batches(
        conn, "purge_orchestrator_runs", params, report, out_of_time
    )
    return report


def _purge_digests(
    conn: DictConnection,
    params: dict[str, Any],
    report: PurgeReport,
    out_of_time: Callable[[], bool],
) -> None:
    """Finished digest periods, their items and notifications; then recipient skips."""
    limit = params["limit"]
    while not out_of_time():
        with conn.transaction():
            row = conn.execute(queries["purge_digests"], params).fetchone()
        assert row is not None  # its final SELECT has no FROM: one row
        report.batches += 1
        report.digest_runs += row["digest_runs"]
        report.notifications += row["notifications"]
        if row["digest_runs"] < limit:
            break
    report.recipient_skips += _delete_in_batches(
        conn, "purge_recipient_skips", params, report, out_of_time
    )


def _delete_in_batches(
    conn: DictConnection,
    query: str,
    params: dict[str, Any],
    report: PurgeReport,
    out_of_time: Callable[[], bool],
) -> int:
    """Run `query` (a DELETE of at most `params["limit"]` rows, each batch its own
    transaction) until a batch deletes fewer or time is up: the rows deleted."""
    deleted = 0
    while not out_of_time():
        with conn.transaction():
            n = conn.execute(queries[query], params).rowcount
        report.batches += 1
        deleted += n
        if n < params["limit"]:
            break
    return deleted
