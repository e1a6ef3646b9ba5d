"""An enrich batch's hand-off in one statement (`enrich_handoff_batch`).

As `step.hand_off` does for one job, for every job of a batch that has its answer: the
summary saved, the email jobs written, the job completed, in one transaction; one round
trip for the batch instead of one per job.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from psycopg_pool import ConnectionPool

from herald import db, ledger
from herald.enrich.step import Summarised
from herald.ledger import JobContext, JobRef, NewJob
from herald.sql import queries


def hand_off_batch(
    pool: ConnectionPool, answered: Sequence[tuple[JobContext, Summarised]]
) -> tuple[set[int], list[JobRef]]:
    """Hand off each (job, result): the ids of the jobs completed, and the email jobs
    written (a job no longer running is left alone, and writes none)."""
    parents: list[int] = []
    emails: list[NewJob] = []
    for ctx, _ in answered:
        notification = ctx.notification
        assert notification is not None
        for recipient in notification["recipients"]:
            parents.append(ctx.job_id)
            emails.append(NewJob("send_email", notification["id"], ctx.job["change_id"],
                                 recipient, notification["priority"]))  # fmt: skip
    results = [result for _, result in answered]
    summaries = [result.summary for result in results]
    params = {
        "job_ids": [ctx.job_id for ctx, _ in answered],
        "saves": [r.status != "skipped" for r in results],
        "summary_notifications": [ctx.job["notification_id"] for ctx, _ in answered],
        "statuses": [r.status for r in results],
        "summaries": [s.text if s else None for s in summaries],
        "models": [s.model if s else None for s in summaries],
        "aliases": [json.dumps(r.aliases) for r in results],
        "prompt_tokens": [s.prompt_tokens if s else 0 for s in summaries],
        "completion_tokens": [s.completion_tokens if s else 0 for s in summaries],
        "errors": [r.error for r in results],
        "notes": [f"summary unavailable: {r.error}" if r.error else None for r in results],
        "breaker": next((r.breaker for r in results if r.breaker), None),
        "parents": parents,
        **ledger.job_params(emails),
    }
    with db.autocommit(pool) as conn:
        rows = conn.execute(queries["enrich_handoff_batch"], params).fetchall()
    completed = {row["id"] for row in rows if row["kind"] == "complete"}
    return completed, ledger.job_refs([row for row in rows if row["kind"] == "written"])
