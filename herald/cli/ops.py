"""Operator commands: `herald jobs list|show|retry|cancel`, `herald stats` (and, later,
`herald metrics serve`).

The work is done by `monitoring.inspect`; this module parses arguments and prints, as
plain-text tables for people or as JSON (`--json`) for scripts. An error the operator can
fix (an unknown job, a job in the wrong state) is one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from herald.ledger import STATUSES, JobRef
from monitoring import inspect

#: Longest text shown in a table cell (`--json` and `jobs show` print everything).
MAX_CELL = 48

Handler = Callable[[argparse.Namespace], int]


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the operator commands on the `herald` parser."""
    add_jobs_commands(sub)
    add_stats_command(sub)
    add_metrics_commands(sub)


# =============================================================================================
# Shared helpers
# =============================================================================================


def _connect(*, autocommit: bool = True) -> Any:
    """The database of HERALD_DATABASE_URL with the herald schema up to date, or one line
    saying why not (`herald.cli.database`); no broker needed."""
    from herald.cli.database import database_settings, open_herald

    return open_herald(database_settings(), autocommit=autocommit)


def _operator_errors(command: str, func: Handler) -> Handler:
    """Run a command; an `OperatorError` becomes one line on stderr and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except inspect.OperatorError as exc:
            print(f"herald {command}: {exc}", file=sys.stderr)
            return 1

    return run


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dump_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, indent=2)


def fmt_time(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def fmt_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.2f}s" if value < 10 else f"{value:.0f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"


def cell(value: Any, width: int = MAX_CELL) -> str:
    """One table cell: `-` for nothing, times in UTC, one line, at most `width` characters."""
    if value is None:
        return "-"
    text = fmt_time(value) if isinstance(value, datetime) else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()
) -> str:
    """A plain-text table; columns whose index is in `right` are right-aligned."""
    body = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    align = set(right)

    def line(values: Sequence[str]) -> str:
        padded = (
            v.rjust(widths[i]) if i in align else v.ljust(widths[i]) for i, v in enumerate(values)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in body])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _status(text: str) -> str:
    if text not in STATUSES:
        raise argparse.ArgumentTypeError(
            f"unknown status {text!r} (choose from {', '.join(STATUSES)})"
        )
    return text


# =============================================================================================
# herald jobs list | show | retry | cancel
# =============================================================================================

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
    with _connect() as conn:
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
                json.dumps(value, default=_json_default) if isinstance(value, dict) else str(value)
            )
        )
        out.append(f"{indent}{key.ljust(width)}  {text}")
    return out


def format_show(info: dict[str, Any]) -> str:
    job, note = info["job"], info["notification"]
    lines = [
        f"job {job['id']}: {job['actor']} on queue {job['queue']}, {job['status']}, "
        f"{job['attempts']} attempt(s)"
    ]
    lines += _fields(
        [
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
        ]
    )
    if note is None:
        lines.append("no notification")
        return "\n".join(lines)
    changes = ", ".join(str(c) for c in note["change_ids"])
    lines.append(f"notification {note['id']}: route {note['route']!r}, table {note['table_name']}")
    lines += _fields(
        [
            ("change ids", changes),
            ("row pk", note["row_pk"]),
            ("priority", note["priority"]),
            ("ai", "yes" if note["ai"] else "no"),
            ("created", note["created_at"]),
        ]
    )
    summary = info["summary"]
    if summary is None:
        lines.append("summary: none")
    else:
        lines.append(f"summary: {summary['status']}")
        lines += _fields(
            [
                ("model", summary["model"]),
                ("error", summary["error"]),
                ("created", summary["created_at"]),
            ]
        )
    delivery = info["delivery"]
    if job["recipient"] is not None:
        if delivery is None:
            lines.append(f"delivery to {job['recipient']}: none yet")
        else:
            lines.append(f"delivery to {job['recipient']}: {delivery['status']}")
            lines += _fields(
                [
                    ("attempts", delivery["attempts"]),
                    (
                        "ambiguous",
                        "yes (an attempt may have sent it already)"
                        if delivery["ambiguous"]
                        else "no",
                    ),
                    ("message-id", delivery["message_id_header"]),
                    ("sent", delivery["sent_at"]),
                    ("error", delivery["error"]),
                ]
            )
    siblings = info["siblings"]
    if siblings:
        lines.append(f"other jobs for notification {note['id']}:")
        table = format_table(
            ("id", "actor", "status", "attempts", "recipient", "finished", "last error"),
            (
                (
                    s["id"],
                    s["actor"],
                    s["status"],
                    s["attempts"],
                    s["recipient"],
                    s["finished_at"],
                    s["last_error"],
                )
                for s in siblings
            ),
            right=(0, 3),
        )
        lines += ["  " + line for line in table.splitlines()]
    else:
        lines.append(f"no other jobs for notification {note['id']}")
    return "\n".join(lines)


def cmd_jobs_show(args: argparse.Namespace) -> int:
    with _connect() as conn:
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
    with _connect() as conn:
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
    with _connect() as conn:
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

    with _connect() as conn:
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
        type=_status,
        metavar="STATUS",
        help=f"only jobs with this status ({', '.join(STATUSES)})",
    )
    ls.add_argument("--limit", type=_positive_int, default=50, help="at most N jobs (50)")
    ls.add_argument("--json", action="store_true", help="JSON, full error texts")
    ls.set_defaults(func=_operator_errors("jobs list", cmd_jobs_list))

    show = cmds.add_parser("show", help="everything about one job")
    show.add_argument("id", type=int, help="the job's id (herald jobs list shows them)")
    show.add_argument("--json", action="store_true", help="JSON, everything")
    show.set_defaults(func=_operator_errors("jobs show", cmd_jobs_show))

    retry = cmds.add_parser("retry", help="publish a failed or canceled job again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?", help="the job to retry")
    which.add_argument("--failed", action="store_true", help="retry every failed job")
    retry.add_argument("--json", action="store_true", help="print what was retried as JSON")
    retry.set_defaults(func=_operator_errors("jobs retry", cmd_jobs_retry))

    cancel = cmds.add_parser("cancel", help="cancel a pending (or running) job")
    cancel.add_argument("id", type=int, help="the job to cancel")
    cancel.set_defaults(func=_operator_errors("jobs cancel", cmd_jobs_cancel))

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
        "--batch-size", type=_positive_int, default=5000, help="rows per transaction (5000)"
    )
    purge.add_argument("--json", action="store_true", help="print the rows removed as JSON")
    purge.set_defaults(func=_operator_errors("jobs purge", cmd_jobs_purge))


# =============================================================================================
# herald stats
# =============================================================================================


def format_stats(s: dict[str, Any]) -> str:
    headers = ("actor", *STATUSES, "total", "success", "mean time", "overdue")
    rows = []
    for name, a in s["actors"].items():
        rate = a["success_rate"]
        rows.append(
            (
                name,
                *(a["counts"][st] for st in STATUSES),
                a["total"],
                "-" if rate is None else f"{rate:.1%}",
                fmt_seconds(a["mean_processing_seconds"]),
                a["overdue"],
            )
        )
    lines = [format_table(headers, rows, right=range(1, len(headers)))]
    window = fmt_seconds(s["processing_window_seconds"])
    lines.append(
        f"(success = complete / (complete + failed); mean time of complete jobs "
        f"finished in the last {window})"
    )
    lines.append("")
    od = s["overdue"]
    lines.append(
        f"overdue jobs: {od['total']}"
        + (f" (oldest {fmt_seconds(od['oldest_seconds'])})" if od["total"] else "")
    )
    uc = s["unclaimed_changes"]
    lines.append(
        f"unclaimed changes: {uc['count']}"
        + (f" (oldest {fmt_seconds(uc['oldest_seconds'])})" if uc["count"] else "")
    )
    for outcome in ("skipped", "failed"):
        entry = s.get(f"{outcome}_changes")
        if entry is not None:
            reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in entry["by_reason"].items())
            lines.append(f"{outcome} changes: {entry['total']} ({reasons})")
    d = s["deliveries"]
    by_status = ", ".join(f"{k} {v}" for k, v in d["by_status"].items())
    lines.append(f"deliveries: {by_status}; ambiguous {d['ambiguous']}")
    last = s["last_successful_orchestrator_run"]
    lines.append(f"last successful orchestrator run: {fmt_time(last) if last else 'never'}")
    for b in s.get("breakers", []):
        line = (
            f"circuit breaker {b['breaker']}: {b['state']}, "
            f"{b['consecutive_failures']} consecutive failures"
        )
        if b["opened_at"]:
            line += f", opened at {fmt_time(b['opened_at'])}"
        lines.append(line)
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    with _connect() as conn:
        s = inspect.stats(conn)
    print(dump_json(s) if args.json else format_stats(s))
    return 0


def add_stats_command(sub: argparse._SubParsersAction) -> None:
    stats = sub.add_parser("stats", help="the job ledger at a glance")
    stats.add_argument("--json", action="store_true", help="machine-readable")
    stats.set_defaults(func=_operator_errors("stats", cmd_stats))


# =============================================================================================
# herald metrics serve (the Prometheus exporter)
# =============================================================================================


def cmd_metrics_serve(args: argparse.Namespace) -> int:
    import logging

    from herald.cli.database import database_settings
    from monitoring.exporter import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = database_settings()  # the exporter reads PostgreSQL only
    host = args.host or settings.metrics_host
    port = settings.exporter_port if args.port is None else args.port
    try:
        serve(
            settings,
            host,
            port,
            ready=lambda bound: print(f"serving http://{host}:{bound}/metrics", flush=True),
        )
    except OSError as exc:
        print(f"herald metrics serve: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_metrics_commands(sub: argparse._SubParsersAction) -> None:
    """`herald metrics serve`: the exporter of ledger gauges read from PostgreSQL."""
    metrics = sub.add_parser("metrics", help="Prometheus metrics read from the job ledger")
    cmds = metrics.add_subparsers(dest="metrics_command", required=True)
    serve = cmds.add_parser(
        "serve", help="serve ledger gauges (pending, oldest pending, backlog, ...) for Prometheus"
    )
    serve.add_argument(
        "--host", help="interface to listen on (HERALD_METRICS_HOST, default 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=int,
        help="port to listen on (HERALD_EXPORTER_PORT, "
        "else HERALD_METRICS_PORT, else 9192); 0 picks a free one",
    )
    serve.set_defaults(func=cmd_metrics_serve)
