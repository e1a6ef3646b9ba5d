"""CPU per email of rendering a notification and writing its message, old vs new.

    python -m benchmarks.render_cost [--emails 5000] [--runs 3] [--baseline REV]

What a worker does for each email between reading its job and talking SMTP: the
`ChangeView`, `render_notification` and `build_message`, for one INSERT of a
bench_plain row (id, title, qty, owner_email) and for the same with an AI summary.
The baseline is the `herald` package at ``REV`` (default ``HEAD``: what the working
tree changes), extracted with ``git archive`` into a temporary folder; each run is a
fresh process for the baseline and one for the working tree, interleaved, and the
figures are process CPU time (``time.process_time``), medians of ``--runs``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
COLUMNS = ("id", "title", "qty", "owner_email")
SUMMARY = (
    "A new item, Item 7, was created with a quantity of 7 and owned by "
    "owner7@example.org. Nothing else changed."
)
# Runs in a fresh interpreter whose first import path is the herald to measure.
CHILD = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from benchmarks.render_cost import measure
print(json.dumps(measure(int(sys.argv[3]))))
"""


def measure(emails: int) -> dict[str, float]:
    """µs of CPU per email, plain and with a summary, in this interpreter's herald."""
    from herald.email.mime import build_message, message_id_for
    from herald.email.render import ChangeView, render_notification
    from herald.templating import Presentation

    look = Presentation()
    at = datetime(2026, 11, 29, 11, 21, 7, 123456, tzinfo=UTC)

    def one(i: int, summary: str | None) -> bytes:
        row = {"id": i, "title": f"Item {i}", "qty": i % 97, "owner_email": f"owner{i}@example.org"}
        change = ChangeView(i, "public.bench_plain", "INSERT", {"id": i}, None, row, at, COLUMNS)
        rendered = render_notification(
            [change], summary=summary, summary_note=None, route="plain", presentation=look
        )
        return build_message(
            rendered,
            mail_from="herald@example.com",
            recipient="ops@example.com",
            message_id=message_id_for(i, "ops@example.com", "example.com"),
            change_ids=[i],
        )

    figures = {}
    for kind, summary in (("plain", None), ("ai", SUMMARY)):
        for i in range(200):  # warm-up: templates compiled, caches filled
            one(i, summary)
        start = time.process_time()
        for i in range(1, emails + 1):
            one(i, summary)
        figures[kind] = (time.process_time() - start) / emails * 1e6
    return figures


def _baseline(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev, "herald"], cwd=REPO, check=True,
                             capture_output=True).stdout  # fmt: skip
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def _run(root: Path, emails: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, str(root), str(REPO), str(emails)],
                         cwd=root, check=True, capture_output=True, text=True).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.render_cost")
    p.add_argument("--emails", type=int, default=5000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--baseline", default="HEAD", help="git revision of the old herald")
    args = p.parse_args(argv)
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="render_cost_") as tmp:
        old = _baseline(args.baseline, Path(tmp))
        for i in range(args.runs):
            runs["old"].append(_run(old, args.emails))
            runs["new"].append(_run(REPO, args.emails))
            print(f"  run {i + 1}/{args.runs}: old {_row(runs['old'][-1])}, "
                  f"new {_row(runs['new'][-1])}", flush=True)  # fmt: skip
    medians: dict[str, Any] = {
        side: {k: statistics.median(r[k] for r in rs) for k in ("plain", "ai")}
        for side, rs in runs.items()
    }
    print(f"CPU µs per email (render + message), medians of {args.runs} x {args.emails}:")
    print(f"  {'':8}{'old (' + args.baseline + ')':>16}{'new':>10}{'saved':>10}")
    for kind in ("plain", "ai"):
        o, n = medians["old"][kind], medians["new"][kind]
        print(f"  {kind:8}{o:16.1f}{n:10.1f}{100 * (o - n) / o:9.0f}%")
    return 0


def _row(figures: dict[str, float]) -> str:
    return f"plain {figures['plain']:.1f} µs, ai {figures['ai']:.1f} µs"


if __name__ == "__main__":
    sys.exit(main())
