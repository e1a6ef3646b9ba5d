"""An enrich batch's hand-off in one statement (`enrich_handoff_batch`).

As `step.hand_off` does for one job, for every job of a batch that has its answer: the
summary saved, the email jobs written, the job completed, in one transaction; one round
trip for the batch instead of one per job. The email jobs are derived in the statement
from the rows it locks (the enrich job, its notification's recipients), so the parameters
are the answers alone, as one JSON text (eight arrays cost five times the CPU to send).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.enrich.step import Summarised
from herald.ledger import ACTOR_QUEUES, JobContext, JobRef
from herald.sql import queries

#: The actor of the email jobs a hand-off writes.
EMAIL_ACTOR = "send_email"


def hand_off_batch(
    pool: ConnectionPool, answered: Sequence[tuple[JobContext, Summarised]]
) -> tuple[set[int], list[JobRef]]:
    """Hand off each (job, result): the ids of the jobs completed, and the email jobs
    written (a job no longer running is left alone, and writes none).

    The statement writes each job's email jobs from its notification's recipients itself
    (as `step.hand_off` writes `NewJob`s): only the answers are sent."""
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
