"""`herald jobs list|show|retry|cancel|purge`: the job ledger from the command line.

The work is done by `monitoring.inspect`; this module parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from herald.cli.output import (
    connect,
    dump_json,
    fmt_time,
    format_table,
    json_default,
    operator_errors,
    positive_int,
    status_arg,
)
from herald.ledger import STATUSES, JobRef
from monitoring import inspect

LIST_COLUMNS = (
    "id",
    "actor",
    "queue",
    "status",
    "attempts",
    "created",
    "finished",
    "change",
    "recipient",
    "last error",
)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    with connect() as conn:
        jobs = inspect.list_jobs(conn, actor=args.actor, status=args.status, limit=args.limit)
    if args.json:
        print(dump_json(jobs))
        return 0
    if not jobs:
        print("no jobs")
        return 0
    print(
        format_table(
            LIST_COLUMNS,
            (
                (
                    j["id"],
                    j["actor"],
                    j["queue"],
                    j["status"],
                    j["attempts"],
                    j["created_at"],
                    j["finished_at"],
                    j["change_id"],
                    j["recipient"],
                    j["last_error"],
                )
                for j in jobs
            ),
            right=(0, 4, 7),
        )
    )
    return 0


def _fields(pairs: Iterable[tuple[str, Any]], indent: str = "  ") -> list[str]:
    pairs = list(pairs)
    width = max(len(k) for k, _ in pairs)
    out = []
    for key, value in pairs:
        text = (
            "-"
            if value is None
            else fmt_time(value)
            if isinstance(value, datetime)
            else (
                json.dumps(value, default=json_default) if isinstance(value, dict) else str(value)
            )
        )
        out.append(f"{indent}{key.ljust(width)}  {text}")
    return out


def format_show(info: dict[str, Any]) -> str:
    """`herald jobs show`: the job, its notification, summary, delivery and sibling jobs."""
    job, note = info["job"], info["notification"]
    lines = _job_lines(job)
    if note is None:
        return "\n".join([*lines, "no notification"])
    lines += _notification_lines(note)
    lines += _summary_lines(info["summary"])
    if job["recipient"] is not None:
        lines += _delivery_lines(job["recipient"], info["delivery"])
    lines += _sibling_lines(note["id"], info["siblings"])
    return "\n".join(lines)


def _job_lines(job: dict[str, Any]) -> list[str]:
    head = (
        f"job {job['id']}: {job['actor']} on queue {job['queue']}, {job['status']}, "
        f"{job['attempts']} attempt(s)"
    )
    return [head, *_fields([
        ("message id", job["message_id"]),
        ("created", job["created_at"]),
        ("published", job["published_at"]),
        ("started", job["started_at"]),
        ("finished", job["finished_at"]),
        ("next attempt due", job["eta"]),
        ("change id", job["change_id"]),
        ("recipient", job["recipient"]),
        ("unique key", job["unique_key"]),
        ("priority", job["priority"]),
        ("last error", job["last_error"]),
    ])]  # fmt: skip


def _notification_lines(note: dict[str, Any]) -> list[str]:
    changes = ", ".join(str(c) for c in note["change_ids"])
    head = f"notification {note['id']}: route {note['route']!r}, table {note['table_name']}"
    return [head, *_fields([
        ("change ids", changes),
        ("row pk", note["row_pk"]),
        ("priority", note["priority"]),
        ("ai", "yes" if note["ai"] else "no"),
        ("created", note["created_at"]),
    ])]  # fmt: skip


def _summary_lines(summary: dict[str, Any] | None) -> list[str]:
    if summary is None:
        return ["summary: none"]
    return [f"summary: {summary['status']}", *_fields([
        ("model", summary["model"]),
        ("error", summary["error"]),
        ("created", summary["created_at"]),
    ])]  # fmt: skip


def _delivery_lines(recipient: str, delivery: dict[str, Any] | None) -> list[str]:
    if delivery is None:
        return [f"delivery to {recipient}: none yet"]
    ambiguous = "yes (an attempt may have sent it already)" if delivery["ambiguous"] else "no"
    return [f"delivery to {recipient}: {delivery['status']}", *_fields([
        ("attempts", delivery["attempts"]),
        ("ambiguous", ambiguous),
        ("message-id", delivery["message_id_header"]),
        ("sent", delivery["sent_at"]),
        ("error", delivery["error"]),
    ])]  # fmt: skip


def _sibling_lines(notification_id: int, siblings: list[dict[str, Any]]) -> list[str]:
    if not siblings:
        return [f"no other jobs for notification {notification_id}"]
    table = format_table(
        ("id", "actor", "status", "attempts", "recipient", "finished", "last error"),
        (
            (s["id"], s["actor"], s["status"], s["attempts"], s["recipient"],
             s["finished_at"], s["last_error"])
            for s in siblings
        ),
        right=(0, 3),
    )  # fmt: skip
    return [f"other jobs for notification {notification_id}:",
            *("  " + line for line in table.splitlines())]  # fmt: skip


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with connect() as conn:
        info = inspect.show_job(conn, args.id)
    print(dump_json(info) if args.json else format_show(info))
    return 0


def publish(refs: Sequence[JobRef]) -> Sequence[int]:
    """Publish through the configured broker, built (`herald.bootstrap`) only when there is
    something to publish."""
    from herald.bootstrap import bootstrap
    from herald.config import load_settings

    app = bootstrap(load_settings())
    try:
        return app.publish(refs)
    finally:
        app.close()


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    with connect() as conn:
        if args.failed:
            result = inspect.retry_jobs(conn, failed=True, publish=publish)
        else:
            result = inspect.retry_jobs(conn, [args.id], publish=publish)
    if args.json:
        print(
            dump_json(
                {
                    "retried": result.retried,
                    "published": result.published,
                    "skipped": [{"id": i, "reason": r} for i, r in result.skipped],
                }
            )
        )
    else:
        if args.failed and not result.retried and not result.skipped:
            print("no failed jobs")
        else:
            print(f"retried {len(result.retried)} job(s), published {result.published}")
        for _, reason in result.skipped:
            print(f"skipped {reason}")
    if result.publish_incomplete:
        print(
            f"herald jobs retry: the broker did not take {result.unpublished} message(s); "
            "those jobs are pending and the orchestrator will publish them again"
            + ("; stopped before the next batch" if args.failed else ""),
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    with connect() as conn:
        previous = inspect.cancel_job(conn, args.id)
    print(f"canceled job {args.id} (was {previous})")
    if previous == "running":
        print(
            "note: the attempt in progress may still finish (and send); "
            "its later retries will be skipped"
        )
    return 0


def _age(text: str) -> Any:
    from herald.retention import parse_age

    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_jobs_purge(args: argparse.Namespace) -> int:
    from herald.retention import purge

    with connect() as conn:
        report = purge(
            conn, args.older_than, include_failed=args.include_failed, batch_size=args.batch_size
        )
    if args.json:
        print(dump_json({**report.counts(), "cutoff": report.cutoff}))
        return 0
    kept = "" if args.include_failed else " (failed jobs kept: --include-failed purges them)"
    print(f"purged rows finished before {fmt_time(report.cutoff)}{kept}")
    print(format_table(("table", "rows"), report.counts().items(), right=(1,)))
    return 0


def add_jobs_commands(sub: argparse._SubParsersAction) -> None:
    jobs = sub.add_parser("jobs", help="look at and act on the job ledger")
    cmds = jobs.add_subparsers(dest="jobs_command", required=True)

    ls = cmds.add_parser("list", help="jobs, newest first")
    ls.add_argument("--actor", help="only this actor's jobs (enrich, send_email)")
    ls.add_argument(
        "--status",
        type=status_arg,
        metavar="STATUS",
        help=f"only jobs with this status ({', '.join(STATUSES)})",
    )
    ls.add_argument("--limit", type=positive_int, default=50, help="at most N jobs (50)")
    ls.add_argument("--json", action="store_true", help="JSON, full error texts")
    ls.set_defaults(func=operator_errors("jobs list", cmd_jobs_list))

    show = cmds.add_parser("show", help="everything about one job")
    show.add_argument("id", type=int, help="the job's id (herald jobs list shows them)")
    show.add_argument("--json", action="store_true", help="JSON, everything")
    show.set_defaults(func=operator_errors("jobs show", cmd_jobs_show))

    retry = cmds.add_parser("retry", help="publish a failed or canceled job again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?", help="the job to retry")
    which.add_argument("--failed", action="store_true", help="retry every failed job")
    retry.add_argument("--json", action="store_true", help="print what was retried as JSON")
    retry.set_defaults(func=operator_errors("jobs retry", cmd_jobs_retry))

    cancel = cmds.add_parser("cancel", help="cancel a pending (or running) job")
    cancel.add_argument("id", type=int, help="the job to cancel")
    cancel.set_defaults(func=operator_errors("jobs cancel", cmd_jobs_cancel))

    purge = cmds.add_parser(
        "purge",
        help="remove finished jobs (and their notifications, changes, deliveries) "
        "older than an age, in batches",
    )
    purge.add_argument(
        "--older-than",
        type=_age,
        required=True,
        metavar="AGE",
        help="how long ago they finished: Nd, Nh or Nm (e.g. 30d)",
    )
    purge.add_argument(
        "--include-failed",
        action="store_true",
        help="purge failed jobs too (kept otherwise, for `herald jobs retry`)",
    )
    purge.add_argument(
        "--batch-size", type=positive_int, default=5000, help="rows per transaction (5000)"
    )
    purge.add_argument("--json", action="store_true", help="print the rows removed as JSON")
    purge.set_defaults(func=operator_errors("jobs purge", cmd_jobs_purge))
