"""The enrich step's hand-off: for each job that has its answer, the summary saved, the
email jobs written and the job completed, in one statement and one transaction
(`enrich_handoff_batch`), for one job (`step.hand_off`) or a whole enrich batch.

The email jobs are derived in the statement from the rows it locks (the enrich job, its
notification's recipients), so the parameters are the answers alone, as one JSON text
(eight arrays cost five times the CPU to send).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.enrich.ai import Summary
from herald.ledger import ACTOR_QUEUES, JobContext, JobRef
from herald.sql import queries

#: The actor of the email jobs a hand-off writes.
EMAIL_ACTOR = "send_email"


@dataclass(frozen=True)
class Summarised:
    """What this attempt has for the hand-off."""

    status: str  # ok | offline | unavailable | skipped
    summary: Summary | None = None
    #: Alias -> real value, stored with a summary (none without one: nothing to put back).
    aliases: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    #: The breaker whose success the hand-off records (a call admitted while closed).
    breaker: str | None = None


def hand_off_batch(
    pool: ConnectionPool, answered: Sequence[tuple[JobContext, Summarised]]
) -> tuple[set[int], list[JobRef]]:
    """Hand off each (job, result): the ids of the jobs completed, and the email jobs
    written (a job no longer running is left alone, and writes none)."""
    params = {
        "answers": json.dumps([_answer(ctx.job_id, result) for ctx, result in answered]),
        "job_ids": [ctx.job_id for ctx, _ in answered],
        "breaker": next((r.breaker for _, r in answered if r.breaker), None),
        "email_actor": EMAIL_ACTOR,
        "email_queue": ACTOR_QUEUES[EMAIL_ACTOR],
    }
    with db.autocommit(pool) as conn:
        rows = conn.execute(queries["enrich_handoff_batch"], params).fetchall()
    completed = {row["id"] for row in rows if row["kind"] == "complete"}
    return completed, ledger.job_refs([row for row in rows if row["kind"] == "written"])


def _answer(job_id: int, result: Summarised) -> dict[str, Any]:
    """One job's answer as the statement reads it (`json_to_recordset`)."""
    summary = result.summary
    return {
        "job_id": job_id,
        "status": result.status,
        "summary": summary.text if summary else None,
        "model": summary.model if summary else None,
        "aliases": result.aliases,
        "prompt_tokens": summary.prompt_tokens if summary else 0,
        "completion_tokens": summary.completion_tokens if summary else 0,
        "error": result.error,
    }
