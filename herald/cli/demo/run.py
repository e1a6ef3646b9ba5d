"""`herald demo`'s run: start the embedded PostgreSQL, make the sample changes, run the
real actors on the StubBroker until every email is written, then show the result
(summary, index.html, the run's `herald stats`); with `keep`, leave the database up
until ^C so `herald stats` and `herald jobs list` can be tried on it.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import dramatiq
from dramatiq.brokers.stub import StubBroker

from herald.bootstrap import bootstrap
from herald.cli.demo.errors import DemoError
from herald.cli.demo.output import prepare_output
from herald.cli.demo.page import write_index
from herald.cli.demo.postgres import embedded_postgres, require_embedded_postgres
from herald.cli.demo.report import (
    Progress,
    drain,
    print_summary,
    read_report,
    stats_text,
    summaries_line,
    summary_facts,
)
from herald.cli.demo.sample import DEMO_CONFIG, Made, Plan, make_changes, plan_changes
from herald.config import Settings, settings_from_mapping
from herald.db import connect
from herald.email.mailer import FileMailer
from herald.environment import read_environment
from herald.migrate import upgrade


def demo_settings(database_url: str) -> Settings:
    """The built-in routes, with HERALD_* and OPENAI_* from the environment (and `.env`)."""
    env = read_environment()
    env.update(HERALD_DATABASE_URL=database_url, HERALD_BROKER_URL="stub://", HERALD_WAKER="off")
    return settings_from_mapping(DEMO_CONFIG, env)


@dataclass(frozen=True)
class Result:
    """What one run did, for the summary and the checks at the end."""

    made: Made
    settings: Settings
    counts: dict[str, int]
    report: dict[str, Any]
    paths: list[Path]


def run_pipeline(url: str, plan: Plan, directory: Path, stderr: TextIO) -> Result:
    """Migrate, make the changes, run the actors in this process until all is done."""
    with connect(url) as conn:
        upgrade(conn)
        conn.commit()
    settings = demo_settings(url)
    print(f"Making {plan.total} changes in a sample app (members, classes)…", file=stderr)
    made = make_changes(url, plan)
    mailer = FileMailer(directory)
    app = bootstrap(settings, mailer=mailer)
    broker = app.broker
    assert isinstance(broker, StubBroker)  # demo_settings names stub://
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    try:
        ai = "OpenAI" if settings.ai_active else "offline summaries"
        print(f"Running the pipeline in-process (StubBroker, 4 threads, {ai})…", file=stderr)
        app.orchestrate_now()
        counts = drain(broker, app.pool, Progress(stderr, plan.emails))
        report = read_report(app.pool)
    finally:
        worker.stop(timeout=5_000)
        broker.flush_all()
        app.close()
    return Result(made, settings, counts, report, list(mailer.paths))


def keep_running(url: str, out: TextIO) -> None:
    """Say how to look at the database, and wait for ^C (or SIGTERM)."""
    quoted = shlex.quote(url)
    print(
        "\nThe embedded PostgreSQL stays up until you press ^C. In another terminal:\n"
        f"  export HERALD_DATABASE_URL={quoted}\n"
        "  herald stats\n"
        "  herald jobs list",
        file=out,
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("\nStopping the embedded PostgreSQL.", file=out, flush=True)


def run_demo(
    out: str | os.PathLike[str] = "herald-demo",
    changes: int = 12,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    started: float | None = None,
    force: bool = False,
    keep: bool = False,
) -> int:
    """Run the demo; 0 when every expected email was written. Raises DemoError otherwise.

    ``started`` (a ``time.monotonic()`` value) lets the caller count the import time too.
    """
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    started = time.monotonic() if started is None else started
    require_embedded_postgres()
    plan = plan_changes(changes)
    directory = prepare_output(Path(out), force=force)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # the same clean-up as ^C

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
    try:
        print("Starting an embedded PostgreSQL…", file=stderr, flush=True)
        with embedded_postgres() as url:
            result = run_pipeline(url, plan, directory, stderr)
            summaries = summaries_line(
                result.report["summaries"], result.report["models"], result.settings.ai_active
            )
            elapsed = time.monotonic() - started
            facts = summary_facts(
                result.made, result.report, result.paths, directory, summaries, elapsed
            )
            index = write_index(directory, result.paths, facts)
            print_summary(stdout, facts, result.paths, index)
            _check(result, plan)
            if keep:
                keep_running(url, stdout)
            else:
                print("\nThe run's `herald stats`:\n" + stats_text(url), file=stdout)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _check(result: Result, plan: Plan) -> None:
    """Every expected email written, nothing failed; else a DemoError naming the first error."""
    missing = plan.emails - len(result.paths)
    if missing or result.counts["failed"] or result.counts["failed_jobs"]:
        error = result.report["error"]
        first = f" (first error: {error})" if error else ""
        raise DemoError(f"{missing} of {plan.emails} emails were not written{first}")
