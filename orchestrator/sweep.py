"""The sweeper: re-drives jobs the broker lost, so a lost message never means a lost email.

Three ways a job can be left behind, each republished from the ledger (actors are
idempotent, so a message that was not lost after all does nothing the second time):
- written but never published (a crash between commit and publish);
- a retry whose re-enqueue failed (Dramatiq logs it and acks the original anyway);
- running long past its time limit (its worker died and the message went with it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.config import Settings
from herald.db import DictRow
from herald.ledger import Publish, job_ref
from herald.sql import queries

#: Past the longest time limit by this much, a running job is taken for dead.
STALE_MARGIN_SECONDS = 60

#: A retry overdue by this much is taken for lost. Generous: a backlog also delays retries,
#: and a republished retry that was not lost costs a second (idempotent) delivery attempt.
LOST_RETRY_SECONDS = 300


@dataclass(frozen=True)
class SweepReport:
    unpublished: int
    lost_retries: int
    stale_running: int


def republish(conn: psycopg.Connection[Any], rows: Sequence[DictRow], publish: Publish) -> int:
    done = list(publish([job_ref(r) for r in rows])) if rows else []
    if done:
        conn.execute(queries["mark_republished"], {"ids": done})
    return len(done)


def sweep(pool: ConnectionPool, settings: Settings, publish: Publish) -> SweepReport:
    grace = settings.orchestrator.republish_after_seconds
    longest = max(p.time_limit_ms for p in settings.retries.values()) / 1000
    with db.connection(pool) as conn:
        unpublished = ledger.republish_stale(conn, publish, grace_seconds=grace)
        unpublished += ledger.publish_due(conn, publish)
        with conn.transaction():
            rows = conn.execute(
                queries["claim_lost_retries"],
                {"grace_seconds": max(grace, LOST_RETRY_SECONDS), "limit": 1000},
            ).fetchall()
            lost = republish(conn, rows, publish)
        with conn.transaction():
            rows = conn.execute(
                queries["claim_stale_running"],
                {"stale_seconds": longest + STALE_MARGIN_SECONDS, "limit": 1000},
            ).fetchall()
            stale = republish(conn, rows, publish)
    return SweepReport(unpublished, lost, stale)
