"""`herald stats` and `herald metrics serve`: the ledger's figures, for people and for
Prometheus."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from herald.cli.output import (
    connect,
    dump_json,
    fmt_seconds,
    fmt_time,
    format_table,
    operator_errors,
)
from herald.ledger import STATUSES
from monitoring.stats import stats as ledger_stats


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
    with connect() as conn:
        s = ledger_stats(conn)
    print(dump_json(s) if args.json else format_stats(s))
    return 0


def add_stats_command(sub: argparse._SubParsersAction) -> None:
    stats = sub.add_parser("stats", help="the job ledger at a glance")
    stats.add_argument("--json", action="store_true", help="machine-readable")
    stats.set_defaults(func=operator_errors("stats", cmd_stats))


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
