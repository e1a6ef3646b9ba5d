"""The `herald` command: demo, schema, tracking, orchestrating, checking, and looking inside."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence

import psycopg

from herald.cli.database import (
    SCHEMA_MISSING,
    ServiceProblem,
    database_settings,
    open_database,
    open_herald,
    require_broker,
    schema_error,
)
from herald.config import ConfigError, load_settings
from herald.redact import scrub, scrub_logging, secrets_of


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("herald")
    except PackageNotFoundError:  # run from a source tree without `pip install -e .`
        return "unknown (not installed)"


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from herald.migrate import upgrade

    with open_database(database_settings(), autocommit=False) as conn:
        applied = upgrade(conn)
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from herald.tracking import track

    with open_herald(database_settings(), autocommit=False) as conn:
        track(conn, args.table)
    print(f"tracking {args.table}")
    return 0


def cmd_orchestrate(args: argparse.Namespace) -> int:
    from herald.bootstrap import bootstrap
    from orchestrator.orchestrate import run_orchestrator

    settings = load_settings()
    open_herald(settings).close()  # down or not migrated: one line now, not a pool's 30 s
    require_broker(settings)  # down: one line now, not jobs left unpublished
    app = bootstrap(settings)
    try:
        report = run_orchestrator(app.pool, app.settings, app.publish)
    finally:
        app.close()
    summary = report.counts()
    if args.json:
        print(json.dumps(summary))
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 1 if report.errors else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole pipeline in this process, on an embedded PostgreSQL and the StubBroker."""
    import time

    from herald.cli.demo import DemoError, run_demo

    started = time.monotonic()
    try:
        return run_demo(
            out=args.out, changes=args.changes, started=started, force=args.force, keep=args.keep
        )
    except DemoError as exc:
        print(f"herald demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\nherald demo: interrupted; the embedded PostgreSQL was stopped and removed",
            file=sys.stderr,
        )
        return 130


def add_core_commands(sub: argparse._SubParsersAction) -> None:
    """demo, db upgrade, track, orchestrate."""
    demo = sub.add_parser(
        "demo",
        help="run the whole pipeline in one process on embedded defaults",
        description="Run Herald end to end on an embedded PostgreSQL and an in-memory "
        "broker; the emails are written as .eml files and an index.html to open in a browser.",
    )
    demo.add_argument(
        "--out", default="herald-demo", help="where to write the emails (default herald-demo)"
    )
    demo.add_argument(
        "--changes", type=int, default=12, help="how many sample changes to make (default 12)"
    )
    demo.add_argument("--force", action="store_true", help="empty a non-empty output folder first")
    demo.add_argument(
        "--keep",
        action="store_true",
        help="leave the embedded PostgreSQL running, to try `herald stats` on it (^C stops it)",
    )
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="the herald schema").add_subparsers(
        dest="db_command", required=True, metavar="COMMAND"
    )
    up = db.add_parser("upgrade", help="create or migrate the schema (safe to run again)")
    up.set_defaults(func=cmd_db_upgrade)

    track = sub.add_parser("track", help="attach the change-log trigger to a table")
    track.add_argument("table", help="the table to track, e.g. classes or billing.invoices")
    track.set_defaults(func=cmd_track)

    orch = sub.add_parser("orchestrate", help="run the orchestrator now, in this process")
    orch.add_argument("--json", action="store_true", help="print the run's counts as JSON")
    orch.set_defaults(func=cmd_orchestrate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herald", description=__doc__)
    parser.add_argument(
        "--version", action="version", version=f"herald {version()}", help="print the version"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_core_commands(sub)

    from herald.cli.check import add_check_command
    from herald.cli.ops import add_commands

    add_check_command(sub)
    add_commands(sub)
    from herald.cli.recipients import add_recipient_commands  # recipients, digests

    add_recipient_commands(sub)
    from herald.cli.serve import add_serve_command

    add_serve_command(sub)
    return parser


def one_line(exc: BaseException) -> str:
    """An error's first line: tracebacks and libpq's hints are for `-v`."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def credentials() -> list[str]:
    """Every credential the environment gives Herald (the URLs' passwords, the OpenAI key),
    masked in all this command prints and logs: a last line of defence behind the errors
    that already leave them out (libraries quote what they were given)."""
    from herald.environment import read_environment

    try:
        env = read_environment()
    except ConfigError:  # a HERALD_ENV_FILE that is not there: the command says so itself
        env = dict(os.environ)
    urls = ("HERALD_DATABASE_URL", "HERALD_BROKER_URL", "HERALD_SMTP_URL", "OPENAI_BASE_URL")
    return secrets_of(*(env.get(name) for name in urls), keys=[env.get("OPENAI_API_KEY")])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    secrets = credentials()
    scrub_logging(secrets)

    def say(text: str) -> int:
        print(scrub(text, secrets), file=sys.stderr)
        return 1

    def trace() -> int:  # -v: the whole traceback, masked like everything else
        return say(traceback.format_exc().rstrip())

    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        say(f"herald: configuration error: {exc}")
        return 2
    except ServiceProblem as exc:
        return say(f"herald: {exc}")
    except psycopg.Error as exc:
        if args.verbose:
            return trace()
        if schema_error(exc):
            return say(f"herald: {SCHEMA_MISSING} ({one_line(exc)})")
        return say(f"herald: {type(exc).__name__}: {one_line(exc)}")
    except Exception as exc:  # noqa: BLE001 - one clear line for operators, not a traceback
        if args.verbose:
            return trace()
        return say(f"herald: {type(exc).__name__}: {one_line(exc)}")


if __name__ == "__main__":
    sys.exit(main())
