"""What the demo shows while it runs and when it is done: progress on stderr, then the
summary (also the facts at the top of index.html) and the run's `herald stats`."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, TextIO

from dramatiq.brokers.stub import StubBroker
from psycopg_pool import ConnectionPool

from herald import db
from herald.cli.demo.errors import DemoError
from herald.cli.demo.sample import Made

#: Give up (and say so) rather than hang if the pipeline stalls.
TIMEOUT_SECONDS = 120.0


class Progress:
    """One line on stderr, redrawn in place on a terminal; plain periodic lines otherwise."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream.isatty()
        self._last: tuple[int, int] | None = None
        self._last_at = 0.0

    def draw(self, sent: int, failed: int = 0, *, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            filled = int(self.WIDTH * min(sent, self.total) / max(self.total, 1))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            extra = f", {failed} failed" if failed else ""
            self.stream.write(f"\r  sending emails [{bar}] {sent}/{self.total}{extra} ")
            if final:
                self.stream.write("\n")
            self.stream.flush()
        elif final or ((sent, failed) != self._last and now - self._last_at >= 1.0):
            extra = f" ({failed} failed)" if failed else ""
            self.stream.write(f"  emails sent: {sent}/{self.total}{extra}\n")
            self.stream.flush()
            self._last, self._last_at = (sent, failed), now


def _counts(pool: ConnectionPool) -> dict[str, int]:
    with db.connection(pool) as conn:
        row = conn.execute(
            "SELECT"
            " (SELECT count(*) FROM herald.deliveries WHERE status = 'sent') AS sent,"
            " (SELECT count(*) FROM herald.deliveries WHERE status = 'failed') AS failed,"
            " (SELECT count(*) FROM herald.jobs WHERE status = 'failed') AS failed_jobs,"
            " (SELECT count(*) FROM herald.jobs WHERE status IN ('pending', 'running')) AS open,"
            " (SELECT count(*) FROM herald.orchestrator_runs WHERE status <> 'running') AS runs"
        ).fetchone()
    assert row is not None  # a SELECT without FROM returns one row
    return dict(row)


def drain(broker: StubBroker, pool: ConnectionPool, progress: Progress) -> dict[str, int]:
    """Wait until the orchestrator has run and every job is finished, drawing progress."""
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        counts = _counts(pool)
        progress.draw(counts["sent"], counts["failed"] + counts["failed_jobs"])
        if counts["runs"] >= 1 and counts["open"] == 0:
            break
        if time.monotonic() > deadline:
            progress.draw(counts["sent"], counts["failed"], final=True)
            raise DemoError(
                f"the pipeline did not finish within {TIMEOUT_SECONDS:g}s "
                f"({counts['sent']} of {progress.total} emails sent); rerun with -v for details"
            )
        time.sleep(0.1)
    for queue in ("orchestrate", "enrich", "email"):  # nothing left in flight
        with contextlib.suppress(Exception):
            broker.join(queue, timeout=5_000, fail_fast=False)
    counts = _counts(pool)
    progress.draw(counts["sent"], counts["failed"] + counts["failed_jobs"], final=True)
    return counts


def read_report(pool: ConnectionPool) -> dict[str, Any]:
    with db.connection(pool) as conn:
        outcomes = {
            r["outcome"]: r["n"]
            for r in conn.execute(
                "SELECT outcome, count(*) AS n FROM herald.change_log GROUP BY outcome"
            )
        }
        summaries = {
            r["status"]: r["n"]
            for r in conn.execute(
                "SELECT status, count(*) AS n FROM herald.summaries GROUP BY status"
            )
        }
        models = [
            r["model"]
            for r in conn.execute(
                "SELECT DISTINCT model FROM herald.summaries"
                " WHERE status = 'ok' AND model IS NOT NULL"
            )
        ]
        error = conn.execute(
            "SELECT last_error FROM herald.jobs WHERE status = 'failed' AND last_error IS NOT NULL"
            " ORDER BY id LIMIT 1"
        ).fetchone()
    return {
        "outcomes": outcomes,
        "summaries": summaries,
        "models": models,
        "error": error["last_error"] if error else None,
    }


def summaries_line(summaries: dict[str, int], models: list[str], ai_active: bool) -> str:
    parts = []
    if summaries.get("offline"):
        why = "" if ai_active else " (no OPENAI_API_KEY)"
        parts.append(f"{summaries['offline']} offline{why}")
    if summaries.get("ok"):
        parts.append(f"{summaries['ok']} AI ({', '.join(models) or 'model'})")
    if summaries.get("unavailable"):
        parts.append(f"{summaries['unavailable']} unavailable (AI failed; raw change shown)")
    return ", ".join(parts) or "0"


def summary_facts(
    made: Made,
    report: dict[str, Any],
    paths: list[Path],
    directory: Path,
    summaries: str,
    elapsed: float,
) -> list[tuple[str, str]]:
    """The run in a few lines: what was changed, routed, skipped and written."""
    plan, outcomes = made.plan, report["outcomes"]
    deletes = f", {plan.deletes} DELETE" if plan.deletes else ""
    return [
        (
            "changes made",
            f"{plan.total} ({plan.inserts} member INSERTs with personal data, "
            f"{plan.updates} class UPDATEs{deletes})",
        ),
        ("routed", str(outcomes.get("routed", 0))),
        ("skipped", f"{outcomes.get('skipped', 0)} (no matching route)"),
        ("failed", str(outcomes.get("failed", 0))),
        ("emails written", f"{len(paths)} of {plan.emails} expected"),
        ("summaries", summaries),
        ("output directory", str(directory)),
        ("total time", f"{elapsed:.1f}s"),
    ]


def print_summary(
    out: TextIO, facts: list[tuple[str, str]], paths: list[Path], index: Path
) -> None:
    """The summary table, then where to look: index.html first, the .eml files too."""
    rows = facts[:-1]
    rows += [("example" if i == 0 else "", p.name) for i, p in enumerate(examples(paths))]
    rows.append(facts[-1])
    print("\nHerald demo summary", file=out)
    for label, value in rows:
        print(f"  {label:<18}{value}", file=out)
    print(f"\nOpen {index.as_uri()} in a browser to read every email.", file=out)
    example = examples(paths)[0] if paths else index.parent / "0001-….eml"
    print(f"Each is also an .eml file for any mail client: less '{example}'", file=out)
    print(
        "To run Herald for real (your PostgreSQL, RabbitMQ, SMTP and routes), see README.md.",
        file=out,
    )


def examples(paths: list[Path]) -> list[Path]:
    """A member email, a class email and one more, when there are that many."""
    ordered = sorted(paths)
    members = [p for p in ordered if "member" in p.name]
    others = [p for p in ordered if p not in members]
    picked = members[:1] + others[:1]
    picked += [p for p in ordered if p not in picked][: 3 - len(picked)]
    return sorted(picked)


def stats_text(url: str) -> str:
    """`herald stats` of the run's database, as the command prints it."""
    from herald.cli.stats import format_stats
    from monitoring.stats import stats as ledger_stats

    with db.connect(url, autocommit=True) as conn:
        return format_stats(ledger_stats(conn))
