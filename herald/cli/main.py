"""The `herald` command: demo, schema, tracking, orchestrating, and looking inside."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from herald.config import ConfigError, load_settings


def _settings():
    return load_settings()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from herald.db import connect
    from herald.migrate import upgrade

    with connect(_settings().database_url) as conn:
        applied = upgrade(conn)
    print(f"applied {', '.join(applied)}" if applied else "schema is up to date")
    return 0


def cmd_track(args: argparse.Namespace) -> int:
    from herald.db import connect
    from herald.tracking import track

    with connect(_settings().database_url) as conn:
        track(conn, args.table)
    print(f"tracking {args.table}")
    return 0


def cmd_orchestrate(args: argparse.Namespace) -> int:
    from herald.bootstrap import bootstrap
    from orchestrator.orchestrate import run_orchestrator

    app = bootstrap(_settings())
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

    from herald.demo import DemoError, run_demo

    started = time.monotonic()
    try:
        return run_demo(out=args.out, changes=args.changes, started=started)
    except DemoError as exc:
        print(f"herald demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\nherald demo: interrupted; the embedded PostgreSQL was stopped and removed",
            file=sys.stderr,
        )
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="herald", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline in one process on embedded defaults")
    demo.add_argument("--out", default="herald-demo", help="where to write the .eml files")
    demo.add_argument("--changes", type=int, default=12, help="how many sample changes to make")
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="the herald schema").add_subparsers(
        dest="db_command", required=True
    )
    up = db.add_parser("upgrade", help="create or migrate the schema (safe to run again)")
    up.set_defaults(func=cmd_db_upgrade)

    track = sub.add_parser("track", help="attach the change-log trigger to a table")
    track.add_argument("table")
    track.set_defaults(func=cmd_track)

    orch = sub.add_parser("orchestrate", help="run the orchestrator now, in this process")
    orch.add_argument("--json", action="store_true")
    orch.set_defaults(func=cmd_orchestrate)

    from herald.cli.ops import add_commands

    add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"herald: configuration error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one clear line for operators, not a traceback
        if args.verbose:
            raise
        print(f"herald: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
