"""The `defaults` scenario: what a user gets without tuning anything (issue 13).

herald.toml holds the two routes and nothing else; the workers run as deployed by default,
one command for every queue (`dramatiq herald.worker:setup --processes 2 --threads 16`),
with the waker, so the orchestrator runs when the changes commit. Each run, side by side
on the same broker and machine minutes:

- the no-op ceiling with the same processes and threads (`scenarios.ceiling`);
- AI off: `changes` on the plain route, commit to the last SMTP acceptance;
- AI on: `ai_changes` on the AI route (the model answering in `ai_latency`) through the
  same workers, with every notification's summary checked in the ledger.

Each end-to-end run also records the CPU each process group spent per change
(benchmarks/cpu.py). Medians of the runs; the ratios are each run's own.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import psycopg

from benchmarks import scenarios
from benchmarks.cpu import CpuMeter, harness_groups
from benchmarks.harness import Services, WorkerGroup

#: The default worker command's shape (the issue's: `--processes 2 --threads 16`).
PROCESSES, THREADS = 2, 16

TARGETS = {"defaults_off_pct_of_ceiling": 15, "defaults_ai_pct_of_off": 50}

#: The rows of `python -m benchmarks`' table: label, summary key, format, target.
ROWS = [
    (f"defaults {PROCESSES} x {THREADS}: no-op ceiling (msg/s)", "defaults_ceiling_per_s",
     ",.0f", ""),
    ("  end to end, AI off (changes/s)", "defaults_off_per_s", ",.0f", ""),
    ("    as % of the no-op ceiling", "defaults_off_pct_of_ceiling", ".1f", ">= 15"),
    ("  end to end, AI 200 ms (changes/s)", "defaults_ai_per_s", ",.0f", ""),
    ("    as % of AI off", "defaults_ai_pct_of_off", ".0f", ">= 50"),
    ("    emails with their summary (%)", "defaults_ai_with_summary_pct", ".0f", ""),
]  # fmt: skip

#: Only the routes: every other setting is Herald's default.
DEFAULTS_TOML = """
[[routes]]
name = "plain"
table = "bench_plain"
operations = ["INSERT"]
recipients = ["ops@example.com"]

[[routes]]
name = "ai"
table = "bench_ai"
operations = ["INSERT"]
recipients = ["ops@example.com"]
ai = true
"""


def defaults(svc: Services, tmp: Path, *, changes: int, ai_changes: int, ceiling_messages: int,
             runs: int, processes: int, threads: int, ai_latency: float,
             extra: dict[str, str] | None = None) -> dict:  # fmt: skip
    """The runs interleaved (ceiling, AI off, AI on) `runs` times; medians and ratios."""
    db = svc.database()
    env = svc.env(db, svc.vhost(), batch_size=0, ai_latency=ai_latency, extra=extra)
    Path(env["HERALD_CONFIG"]).write_text(DEFAULTS_TOML)  # no tuning at all
    group = WorkerGroup(env, scenarios.path_for_log(tmp, "workers-defaults"),
                        processes=processes, threads=threads)  # fmt: skip
    meter = CpuMeter(harness_groups(svc, lambda: [group.proc.pid, *group.worker_pids()]))
    rows: list[dict] = []
    try:
        scenarios.end_to_end(svc, db, table="bench_plain", changes=500)  # warm-up
        scenarios.end_to_end(svc, db, table="bench_ai", changes=300)
        for i in range(runs):
            ceiling = scenarios.ceiling(svc, messages=ceiling_messages, processes=processes,
                                        threads=threads)["drain_per_s"]  # fmt: skip
            off = _timed(svc, db, meter, "bench_plain", changes)
            on = _timed(svc, db, meter, "bench_ai", ai_changes)
            on["with_summary"] = _summarised(db)
            row = {"ceiling_per_s": ceiling, "off": off, "ai": on,
                   "off_pct_of_ceiling": 100 * off["per_s"] / ceiling,
                   "ai_pct_of_off": 100 * on["per_s"] / off["per_s"]}  # fmt: skip
            rows.append(row)
            print(f"    run {i + 1}/{runs}: ceiling {ceiling:,.0f} msg/s, AI off "
                  f"{off['per_s']:,.0f}/s ({row['off_pct_of_ceiling']:.1f}%), AI "
                  f"{ai_latency * 1000:.0f} ms {on['per_s']:,.0f}/s "
                  f"({row['ai_pct_of_off']:.0f}% of off, {on['with_summary']}/{ai_changes} "
                  "with their summary)", flush=True)  # fmt: skip
    finally:
        group.stop()
        svc.drop(db)
    return _medians(rows, processes=processes, threads=threads, changes=changes,
                    ai_changes=ai_changes, ai_latency=ai_latency)  # fmt: skip


def _timed(svc: Services, db: str, meter: CpuMeter, table: str, changes: int) -> dict:
    meter.start()
    result = scenarios.end_to_end(svc, db, table=table, changes=changes)
    result["cpu_ms_per_change"] = meter.per_change(changes)
    return result


def _summarised(db: str) -> int:
    """Notifications whose email carries the model's summary (status ok)."""
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM herald.summaries WHERE status = 'ok'").fetchone()
    return int(row[0]) if row else 0


def _median_row(rows: list[dict], key: str) -> dict:
    ordered = sorted(rows, key=lambda r: r[key])
    return ordered[len(ordered) // 2]


def _medians(rows: list[dict], **settings: object) -> dict:
    def median(pick: Callable[[dict], float]) -> float:
        return statistics.median(pick(r) for r in rows)

    return {
        **settings,
        "ceiling_per_s": median(lambda r: r["ceiling_per_s"]),
        "off_per_s": median(lambda r: r["off"]["per_s"]),
        "ai_per_s": median(lambda r: r["ai"]["per_s"]),
        "off_pct_of_ceiling": median(lambda r: r["off_pct_of_ceiling"]),
        "ai_pct_of_off": median(lambda r: r["ai_pct_of_off"]),
        "with_summary": min(r["ai"]["with_summary"] for r in rows),
        "cpu_ms_per_change_off": _median_row(rows, "off_pct_of_ceiling")["off"][
            "cpu_ms_per_change"
        ],
        "cpu_ms_per_change_ai": _median_row(rows, "ai_pct_of_off")["ai"]["cpu_ms_per_change"],
        "runs": rows,
    }


def summary(result: dict) -> dict:
    """The figures the table and the targets read, from `defaults()`'s result."""
    return {
        "defaults_ceiling_per_s": result["ceiling_per_s"],
        "defaults_off_per_s": result["off_per_s"],
        "defaults_off_pct_of_ceiling": result["off_pct_of_ceiling"],
        "defaults_ai_per_s": result["ai_per_s"],
        "defaults_ai_pct_of_off": result["ai_pct_of_off"],
        "defaults_ai_with_summary_pct": 100 * result["with_summary"] / result["ai_changes"],
    }
