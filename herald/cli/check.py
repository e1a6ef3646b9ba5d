"""`herald check [--json]`: print `herald.check`'s checklist; exit 1 when anything failed.

A configuration Herald refuses to load is itself a failed line (exit 2, as any command
refusing its configuration), so one run shows what to fix first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from herald.check.results import CheckResult, fail, failed
from herald.config import ConfigError

MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL", "skip": "skip"}


def format_checklist(results: Sequence[CheckResult]) -> str:
    width = max((len(r.name) for r in results), default=0)
    lines = [
        f"[{MARKS.get(r.status, r.status)}] {r.name.ljust(width)}  {r.detail}" for r in results
    ]
    counts = {s: sum(1 for r in results if r.status == s) for s in MARKS}
    lines.append(
        f"\n{counts['ok']} ok, {counts['warn']} warning(s), {counts['fail']} failed, "
        f"{counts['skip']} skipped"
    )
    return "\n".join(lines)


def cmd_check(args: argparse.Namespace) -> int:
    from herald.check import run_checks
    from herald.config import load_settings
    from herald.environment import read_environment

    try:
        env = read_environment()
        settings = load_settings(env, require=())
    except ConfigError as exc:
        results: list[CheckResult] = [fail("configuration", str(exc))]
        status = 2
    else:
        where = settings.config_path or "no herald.toml (HERALD_CONFIG unset)"
        results = [CheckResult("configuration", "ok", f"{where}: loaded")]
        results += run_checks(settings, env)
        status = 1 if failed(results) else 0
    if args.json:
        print(json.dumps({"ok": status == 0, "checks": [r.as_dict() for r in results]}, indent=2))
    else:
        print(format_checklist(results))
    if status and not args.json:
        print("herald check: some checks failed", file=sys.stderr)
    return status


def add_check_command(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser(
        "check",
        help="check the configuration against the database, RabbitMQ, SMTP and the AI",
        description="Check the configuration against the running world: the database and "
        "its schema, tracked tables and routes, recipients, templates, RabbitMQ, SMTP and "
        "the AI endpoint. Exits 1 when a check fails, 2 when the configuration is refused.",
    )
    check.add_argument("--json", action="store_true", help="print the results as JSON")
    check.set_defaults(func=cmd_check)
