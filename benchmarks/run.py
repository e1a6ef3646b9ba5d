"""`python -m benchmarks`: run every scenario, print the table, write the JSON.

Everything runs on loopback servers of its own (PostgreSQL, RabbitMQ, an SMTP sink,
an OpenAI-compatible server with a chosen latency). Figures are medians of `--runs`
runs; the ceiling and the seeds' baseline are measured in the same run, so the ratios
compare like with like. `--quick` shrinks every scenario for a smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil
import psycopg

from benchmarks import defaults, scenarios
from benchmarks.harness import Services, WorkerGroup
from herald.config import DEFAULT_MAIL_BATCH_SIZE, OrchestratorSettings

RESULTS = Path(__file__).resolve().parent / "results"

TARGETS = {
    "e2e_ai_off_per_s": 1000,
    "e2e_ai_off_pct_of_ceiling": 15,
    "e2e_ai_200ms_per_s": 500,
    "orchestrator_per_s": 5000,
    "latency_p50_s": 0.5,
    "latency_p99_s": 1.0,
    "rss_growth_pct": 10,
    "rss_max_mb": 150,
    "x_seeds": 100,
    **defaults.TARGETS,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--runs", type=int, default=3, help="runs per throughput scenario (median)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not figures")
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="scenarios to run (ceiling orchestrator e2e_off e2e_ai latency soak seeds "
        "defaults; quorum, quorum against classic queues, runs only when named)",
    )
    p.add_argument("--processes", type=int, default=2, help="worker processes (AI off)")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process (AI off)")
    p.add_argument("--ai-processes", type=int, default=2, help="enrich worker processes (AI on)")
    p.add_argument("--ai-threads", type=int, default=64, help="threads per enrich process (AI on)")
    p.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="dramatiq_queue_prefetch (default: Dramatiq's, 2 x threads)",
    )
    p.add_argument("--batch-size", type=int, default=OrchestratorSettings.batch_size,
                   help="[orchestrator] batch_size (default: Herald's)")  # fmt: skip
    p.add_argument(
        "--email-batch",
        type=int,
        default=DEFAULT_MAIL_BATCH_SIZE,
        help="[mail] batch_size: email jobs per message (1: one message per job)",
    )
    p.add_argument("--ai-latency", type=float, default=0.2, help="AI answer time, seconds")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"ceiling": 4000, "orchestrator": 4000, "e2e_off": 2000, "e2e_ai": 1000,
                "latency_seconds": 5, "soak": 4000, "soak_chunks": 4, "seeds": 10,
                "defaults": 2000, "defaults_ai": 1000}  # fmt: skip
    # Sized so the whole suite stays under 10 minutes on a 2-core machine; the soak is the
    # issue's 100,000 changes.
    return {"ceiling": 15000, "orchestrator": 10000, "e2e_off": 3000, "e2e_ai": 1000,
            "latency_seconds": 15, "soak": 100000, "soak_chunks": 10, "seeds": 20,
            "defaults": 10000, "defaults_ai": 5000}  # fmt: skip


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model or platform.processor(),
        "platform": platform.platform(),
        # Other work on the machine (load average, 1/5/15 min) deflates every figure.
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions(svc: Services) -> dict:
    with psycopg.connect(svc.postgres.url) as conn:
        (pg,) = conn.execute("SHOW server_version").fetchone()  # type: ignore[misc]
    try:
        rabbit = svc.rabbitmq.api("GET", "/overview")["rabbitmq_version"]
    except Exception:  # noqa: BLE001 - reported as unknown
        rabbit = "unknown"
    return {
        "python": platform.python_version(),
        "dramatiq": metadata.version("dramatiq"),
        "pika": metadata.version("pika"),
        "psycopg": metadata.version("psycopg"),
        "rabbitmq": rabbit,
        "postgresql": pg,
    }


def median_of(runs: int, fn: Callable[[], dict], key: str) -> dict:
    results = []
    for i in range(runs):
        result = fn()
        print(f"    run {i + 1}/{runs}: {key}={result[key]:.1f}", flush=True)
        results.append(result)
    ordered = sorted(results, key=lambda r: r[key])
    median = dict(ordered[len(ordered) // 2])
    median["runs"] = [r[key] for r in results]
    median[key] = statistics.median(r[key] for r in results)
    return median


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    size = sizes(args.quick)
    want = set(args.only or DEFAULT_SCENARIOS)
    began = time.perf_counter()
    out: dict = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv or sys.argv[1:]),
        "machine": machine(), "sizes": size, "targets": TARGETS, "scenarios": {},
        "settings": worker_shapes(args),
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as tmp:
        print("starting PostgreSQL, RabbitMQ, SMTP sink, OpenAI-compatible server ...", flush=True)
        run = Run(Services.start(Path(tmp)), Path(tmp), args, size, out["scenarios"])
        try:
            out["versions"] = versions(run.svc)
            for names, scenario in SCENARIOS:
                if want & names:
                    scenario(run, want)
        finally:
            run.svc.stop()
    out["elapsed_seconds"] = round(time.perf_counter() - began, 1)
    out["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out["summary"] = summarise(out["scenarios"])
    out["table"] = render(out)
    print()
    print(out["table"])
    write(out, args.out)
    return 0


def worker_shapes(args: argparse.Namespace) -> dict:
    """The knobs of this run, for the results file."""
    return {
        "runs": args.runs, "batch_size": args.batch_size, "email_batch": args.email_batch,
        "ai_latency_s": args.ai_latency,
        "ai_off_workers": scenarios.worker_settings(args.processes, args.threads, args.prefetch,
                                                    None),
        "ai_on_workers": [
            scenarios.worker_settings(args.ai_processes, args.ai_threads, args.prefetch,
                                      scenarios.AI_QUEUES),
            scenarios.worker_settings(args.processes, args.threads, args.prefetch,
                                      scenarios.OTHER_QUEUES),
        ],
        "ceiling_workers": scenarios.worker_settings(args.processes, args.threads, None, None),
    }  # fmt: skip


def write(out: dict, folder: Path) -> None:
    """`results/<timestamp>.json` and `results/latest.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = json.dumps(out, indent=2, default=float)
    (folder / f"{stamp}.json").write_text(text)
    (folder / "latest.json").write_text(text)
    print(f"\nwritten {folder / (stamp + '.json')} (and latest.json) "
          f"in {out['elapsed_seconds']} s")  # fmt: skip


@dataclass
class Run:
    """What every scenario needs: the services, a scratch folder, the knobs and sizes, and
    the results dict it adds its figures to."""

    svc: Services
    tmp: Path
    args: argparse.Namespace
    size: dict[str, int]
    res: dict


def run_ceiling(run: Run, want: set[str]) -> None:
    args = run.args
    print(f"ceiling: no-op actor, {args.processes} x {args.threads}", flush=True)
    run.res["ceiling"] = median_of(args.runs, lambda: scenarios.ceiling(
        run.svc, messages=run.size["ceiling"], processes=args.processes,
        threads=args.threads), "drain_per_s")  # fmt: skip


def run_orchestrator(run: Run, want: set[str]) -> None:
    args, changes = run.args, run.size["orchestrator"]
    print(f"orchestrator: {changes} changes, batch {args.batch_size}", flush=True)
    db = run.svc.database()
    run.res["orchestrator"] = median_of(args.runs, lambda: scenarios.orchestrator(
        run.svc, db, changes=changes, batch_size=args.batch_size,
        email_batch=args.email_batch), "per_s")  # fmt: skip
    run.svc.drop(db)


def run_ai_off(run: Run, want: set[str]) -> None:
    """e2e_off, latency and soak: one database and one worker group, AI off."""
    svc, args, size, res = run.svc, run.args, run.size, run.res
    db = svc.database()
    env = svc.env(db, svc.vhost(), batch_size=args.batch_size, ai_latency=0.0,
                  email_batch=args.email_batch,
                  extra=scenarios.prefetch_env(args.prefetch))  # fmt: skip
    group = WorkerGroup(env, scenarios.path_for_log(run.tmp, "workers-off"),
                        processes=args.processes, threads=args.threads)  # fmt: skip
    try:
        scenarios.end_to_end(svc, db, table="bench_plain", changes=500)  # warm-up
        if "e2e_off" in want:
            print(f"end to end, AI off: {size['e2e_off']} changes", flush=True)
            res["e2e_ai_off"] = median_of(args.runs, lambda: scenarios.end_to_end(
                svc, db, table="bench_plain", changes=size["e2e_off"]), "per_s")  # fmt: skip
        if "latency" in want:
            print(f"latency at 50 changes/s for {size['latency_seconds']} s", flush=True)
            res["latency"] = scenarios.latency(svc, db, rate=50, seconds=size["latency_seconds"])
            print(f"    p50={res['latency']['p50_s']:.3f}s "
                  f"p99={res['latency']['p99_s']:.3f}s", flush=True)  # fmt: skip
        if "soak" in want:
            print(f"soak: {size['soak']} changes", flush=True)
            res["soak"] = scenarios.soak(svc, db, group, changes=size["soak"],
                                         chunks=size["soak_chunks"])  # fmt: skip
            print(f"    RSS {res['soak']['rss_start_mb']} -> "
                  f"{res['soak']['rss_end_mb']} MB", flush=True)  # fmt: skip
    finally:
        group.stop()
        svc.drop(db)


def run_ai_tuned(run: Run, want: set[str]) -> None:
    """e2e_ai as deployed in earlier rounds: the enrich queue in workers of its own with
    threads ~ throughput x AI latency; every other queue in the regular workers."""
    svc, args = run.svc, run.args
    db = svc.database()
    env = svc.env(db, svc.vhost(), batch_size=args.batch_size,
                  ai_latency=args.ai_latency, email_batch=args.email_batch,
                  extra=scenarios.prefetch_env(args.prefetch))  # fmt: skip
    print(f"end to end, AI at {args.ai_latency * 1000:.0f} ms: {run.size['e2e_ai']} "
          f"changes; enrich {args.ai_processes} x {args.ai_threads}, the rest "
          f"{args.processes} x {args.threads}", flush=True)  # fmt: skip
    shapes = [
        ("workers-enrich", args.ai_processes, args.ai_threads, scenarios.AI_QUEUES),
        ("workers-rest", args.processes, args.threads, scenarios.OTHER_QUEUES),
    ]
    groups = [
        WorkerGroup(env, scenarios.path_for_log(run.tmp, name), processes=p, threads=t,
                    queues=queues)
        for name, p, t, queues in shapes
    ]  # fmt: skip
    try:
        scenarios.end_to_end(svc, db, table="bench_ai", changes=300)  # warm-up
        run.res["e2e_ai"] = median_of(args.runs, lambda: scenarios.end_to_end(
            svc, db, table="bench_ai", changes=run.size["e2e_ai"]), "per_s")  # fmt: skip
    finally:
        for group in groups:
            group.stop()
        svc.drop(db)


def run_defaults(run: Run, want: set[str]) -> None:
    args, size = run.args, run.size
    print(f"defaults: untouched herald.toml, {defaults.PROCESSES} x "
          f"{defaults.THREADS}; ceiling, {size['defaults']} changes AI off, "
          f"{size['defaults_ai']} AI {args.ai_latency * 1000:.0f} ms, interleaved",
          flush=True)  # fmt: skip
    run.res["defaults"] = defaults.defaults(
        run.svc, run.tmp, changes=size["defaults"], ai_changes=size["defaults_ai"],
        ceiling_messages=size["ceiling"], runs=args.runs,
        processes=defaults.PROCESSES, threads=defaults.THREADS,
        ai_latency=args.ai_latency,
    )  # fmt: skip


def run_quorum(run: Run, want: set[str]) -> None:
    args = run.args
    print(f"quorum against classic: {run.size['e2e_off']} changes per run, AI off; "
          "a three-node cluster starts", flush=True)  # fmt: skip
    run.res["quorum"] = scenarios.quorum_vs_classic(
        run.svc, run.tmp, changes=run.size["e2e_off"], runs=args.runs,
        processes=args.processes, threads=args.threads,
        batch_size=args.batch_size, email_batch=args.email_batch,
        prefetch=args.prefetch,
    )  # fmt: skip


def run_seeds(run: Run, want: set[str]) -> None:
    print("seeds' design: synchronous loop, AI and SMTP inline", flush=True)
    db = run.svc.database()
    run.res["seeds"] = scenarios.seeds(
        run.svc, db, changes=run.size["seeds"], ai_latency=run.args.ai_latency
    )


#: The scenarios in the order they run: the `--only` names each answers to, and how.
SCENARIOS: list[tuple[set[str], Callable[[Run, set[str]], None]]] = [
    ({"ceiling"}, run_ceiling),
    ({"orchestrator"}, run_orchestrator),
    ({"e2e_off", "latency", "soak"}, run_ai_off),
    ({"e2e_ai"}, run_ai_tuned),
    ({"defaults"}, run_defaults),
    ({"quorum"}, run_quorum),
    ({"seeds"}, run_seeds),
]
#: What runs without `--only` (quorum starts a cluster: only when named).
DEFAULT_SCENARIOS = ["ceiling", "orchestrator", "e2e_off", "e2e_ai", "latency", "soak", "seeds",
                     "defaults"]  # fmt: skip


def summarise(res: dict) -> dict:
    s: dict = {}
    ceiling = res.get("ceiling", {}).get("drain_per_s")
    seeds = res.get("seeds", {}).get("per_s_at_50_per_minute")
    if "e2e_ai_off" in res:
        s["e2e_ai_off_per_s"] = res["e2e_ai_off"]["per_s"]
        if ceiling:
            s["e2e_ai_off_pct_of_ceiling"] = 100 * s["e2e_ai_off_per_s"] / ceiling
    if "e2e_ai" in res:
        s["e2e_ai_200ms_per_s"] = res["e2e_ai"]["per_s"]
        if seeds:
            s["x_seeds"] = s["e2e_ai_200ms_per_s"] / seeds
    if "e2e_ai_off" in res and seeds:
        s["x_seeds_ai_off"] = res["e2e_ai_off"]["per_s"] / seeds
    if "orchestrator" in res:
        s["orchestrator_per_s"] = res["orchestrator"]["per_s"]
    if "latency" in res:
        s["latency_p50_s"] = res["latency"]["p50_s"]
        s["latency_p95_s"] = res["latency"]["p95_s"]
        s["latency_p99_s"] = res["latency"]["p99_s"]
    if "soak" in res:
        s["rss_growth_pct"] = res["soak"]["rss_growth_pct"]
        s["rss_max_mb"] = res["soak"]["rss_max_mb"]
    if "quorum" in res:
        quorum = res["quorum"]
        for setup, per_s in quorum["per_s"].items():
            s[f"e2e_{setup}_per_s"] = per_s
        s["quorum_3_nodes_vs_classic"] = quorum["ratio_quorum_3_nodes"]
        s["quorum_1_node_vs_classic"] = quorum["ratio_quorum_1_node"]
    if "defaults" in res:
        s.update(defaults.summary(res["defaults"]))
    if ceiling:
        s["ceiling_per_s"] = ceiling
    if seeds:
        s["seeds_per_s"] = seeds
    return s


def _met(key: str, value: float) -> str:
    target = TARGETS.get(key)
    if target is None:
        return ""
    lower_is_better = key.startswith(("latency", "rss"))
    ok = abs(value) <= target if lower_is_better else value >= target
    return "met" if ok else "NOT met"


def render(out: dict) -> str:
    s, res = out["summary"], out["scenarios"]
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, key: str, fmt: str, target: str) -> None:
        if key in s:
            rows.append((label, format(s[key], fmt), target, _met(key, s[key])))

    row("no-op actor ceiling (msg/s)", "ceiling_per_s", ",.0f", "")
    row("orchestrator (changes/s)", "orchestrator_per_s", ",.0f", ">= 5,000")
    row("end to end, AI off (changes/s)", "e2e_ai_off_per_s", ",.0f", ">= 1,000")
    row("  as % of the no-op ceiling", "e2e_ai_off_pct_of_ceiling", ".1f", ">= 15")
    row("end to end, AI 200 ms (changes/s)", "e2e_ai_200ms_per_s", ",.0f", ">= 500")
    row("latency p50 at 50/s (s)", "latency_p50_s", ".3f", "<= 0.5")
    row("latency p95 at 50/s (s)", "latency_p95_s", ".3f", "")
    row("latency p99 at 50/s (s)", "latency_p99_s", ".3f", "<= 1.0")
    if "soak" in res:
        soak = res["soak"]
        rows.append((f"worker RSS over {soak['changes']:,}-change soak (MB)",
                     "/".join(f"{x:.0f}" for x in soak["rss_start_mb"]) + " -> "
                     + "/".join(f"{x:.0f}" for x in soak["rss_end_mb"]), "", ""))  # fmt: skip
    row("  RSS growth (%)", "rss_growth_pct", "+.1f", "within +-10")
    row("  RSS max per process (MB)", "rss_max_mb", ".0f", "<= 150")
    row("end to end, classic queues (changes/s)", "e2e_classic_per_s", ",.0f", "")
    row("end to end, quorum, 1 node (changes/s)", "e2e_quorum_1_node_per_s", ",.0f", "")
    row("end to end, quorum, 3 nodes (changes/s)", "e2e_quorum_3_nodes_per_s", ",.0f", "")
    row("  quorum 3 nodes / classic", "quorum_3_nodes_vs_classic", ".2f", "")
    row("  quorum 1 node / classic", "quorum_1_node_vs_classic", ".2f", "")
    for label, key, fmt, target in defaults.ROWS:
        row(label, key, fmt, target)
    row("seeds' design (changes/s)", "seeds_per_s", ".3f", "")
    row("x seeds' design (AI 200 ms)", "x_seeds", ",.0f", ">= 100")
    row("x seeds' design (AI off)", "x_seeds_ai_off", ",.0f", "")
    widths = [max(len(r[i]) for r in rows + [("metric", "value", "target", "")]) for i in range(4)]
    header = ("metric", "value", "target", "")
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    m = out["machine"]
    lines.append("")
    lines.append(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, load "
                 f"{m['loadavg_at_start'][0]} -> {m.get('loadavg_at_end', ['?'])[0]}; "
                 + ", ".join(f"{k} {v}" for k, v in out.get("versions", {}).items()))  # fmt: skip
    return "\n".join(lines)
