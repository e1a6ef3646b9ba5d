"""`python -m benchmarks.api`: the HTTP API over a ledger of a million jobs.

A private PostgreSQL and RabbitMQ (the test suite's, on loopback), a ledger generated in
SQL (`api_ledger.sql`), `herald serve`'s application on uvicorn in this process, and a
keep-alive HTTP client asking each endpoint in turn. Reports p50 and p95 per endpoint;
targets: GET /api/jobs with any single filter p95 < 50 ms, /readyz p95 < 20 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from herald.config import settings_from_mapping
from herald.db import connect
from herald.migrate import upgrade
from herald.web.app import create_app
from tests.services import free_port, wait_until
from tests.services.postgres import start_postgres
from tests.services.rabbitmq import fresh_vhost_name, start_rabbitmq

LEDGER_SQL = Path(__file__).with_name("api_ledger.sql")
TOKEN = "benchmark-operator-token-0123456789"
TARGETS_MS = {"list": 50.0, "readyz": 20.0}


@dataclass
class ReadOnlyServices:
    """What the application needs; nothing is published while measuring reads."""

    settings: Any
    pool: ConnectionPool

    def publish(self, refs: Any) -> list[int]:
        return []

    def orchestrate_now(self) -> None:
        return None


def generate(url: str, jobs: int) -> float:
    started = time.perf_counter()
    with connect(url, autocommit=True) as conn:
        for statement in LEDGER_SQL.read_text().split(";\n"):
            body = "\n".join(
                line for line in statement.splitlines() if not line.startswith("--")
            ).strip()
            if body:
                conn.execute(body, {"jobs": jobs})
        conn.execute("VACUUM ANALYZE herald.jobs")
        conn.execute("VACUUM ANALYZE herald.notifications")
        conn.execute("VACUUM ANALYZE herald.change_log")
    return time.perf_counter() - started


def endpoints(jobs: int) -> list[tuple[str, str, str]]:
    """(kind, name, path): kind "list" has the 50 ms target, "readyz" the 20 ms one."""
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    long_ago = (datetime.now(UTC) - timedelta(days=3650)).strftime("%Y-%m-%dT%H:%M:%SZ")
    middle = jobs // 2
    return [
        ("list", "no filter", "/api/jobs"),
        ("list", "status=failed", "/api/jobs?status=failed"),
        ("list", "status=running", "/api/jobs?status=running"),
        ("list", "actor=enrich", "/api/jobs?actor=enrich"),
        ("list", "queue=email", "/api/jobs?queue=email"),
        ("list", "route=classes (40%)", "/api/jobs?route=classes"),
        ("list", "route=audit (0.5%)", "/api/jobs?route=audit"),
        ("list", "table=orders", "/api/jobs?table=orders"),
        ("list", "recipient=", "/api/jobs?recipient=user77@example.com"),
        ("list", "change_id=", f"/api/jobs?change_id={middle // 2}"),
        ("list", "created_after=1h ago", f"/api/jobs?created_after={hour_ago}"),
        ("list", "created_before=10y ago (none)", f"/api/jobs?created_before={long_ago}"),
        ("list", "q=user77 (hits)", "/api/jobs?q=user77%20"),
        ("list", "q=zzz (no hit)", "/api/jobs?q=zzz"),
        ("list", "sort=created_at asc", "/api/jobs?sort=created_at&order=asc"),
        ("other", "limit=500 (no filter)", "/api/jobs?limit=500"),
        ("other", "job detail", f"/api/jobs/{middle}"),
        ("other", "change trace", f"/api/changes/{middle // 2}"),
        ("readyz", "/readyz", "/readyz"),
        ("other", "/livez", "/livez"),
        ("other", "/health", "/health"),
        ("other", "page: overview (first response)", "/"),
        ("other", "page: jobs (first response)", "/jobs"),
        ("other", "page: jobs?status=failed", "/jobs?status=failed"),
        ("other", "/api/stats?hours=24", "/api/stats?hours=24"),
    ]


def measure(client: httpx.Client, path: str, runs: int, warmup: int) -> list[float]:
    timings = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
        if i >= warmup:
            timings.append(elapsed)
    return timings


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def serve(app: Any) -> tuple[uvicorn.Server, threading.Thread, str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if not wait_until(lambda: server.started, timeout=15):
        raise RuntimeError("uvicorn did not start")
    return server, thread, f"http://127.0.0.1:{port}"


def run(jobs: int, runs: int, warmup: int) -> dict[str, Any]:
    postgres, rabbit = start_postgres(), start_rabbitmq()
    try:
        url = postgres.create_database()
        with connect(url) as conn:
            upgrade(conn)
        print(f"generating {jobs:,} jobs ...", file=sys.stderr)
        seconds = generate(url, jobs)
        print(f"  {seconds:.1f} s", file=sys.stderr)
        broker_url = rabbit.add_vhost(fresh_vhost_name())
        env = {"HERALD_DATABASE_URL": url, "HERALD_BROKER_URL": broker_url,
               "HERALD_API_TOKENS": f"operator:{TOKEN}"}  # fmt: skip
        pool = ConnectionPool(url, min_size=4, max_size=8, kwargs={"row_factory": dict_row})
        pool.wait()
        server, thread, base = serve(create_app(ReadOnlyServices(settings_from_mapping({}, env),
                                                                 pool)))  # fmt: skip
        results = []
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                signin = client.get("/signin")
                client.post(
                    "/signin",
                    data={"token": TOKEN, "csrf": signin.cookies.get("herald_signin", "")},
                )
                client.headers["Authorization"] = f"Bearer {TOKEN}"
                for kind, name, path in endpoints(jobs):
                    # The stats read the whole window (seconds at a million): fewer runs.
                    n = max(runs // 10, 5) if "stats" in path else runs
                    timings = measure(client, path, n, min(warmup, n))
                    p95 = round(percentile(timings, 0.95), 2)
                    target = TARGETS_MS.get(kind)
                    row: dict[str, Any] = {
                        "kind": kind, "endpoint": name, "path": path,
                        "p50_ms": round(statistics.median(timings), 2), "p95_ms": p95,
                        "max_ms": round(max(timings), 2), "target_ms": target,
                        "met": None if target is None else p95 < target,
                    }  # fmt: skip
                    results.append(row)
                    print(f"  {name:34s} p50 {row['p50_ms']:7.2f} ms  p95 {row['p95_ms']:7.2f} ms",
                          file=sys.stderr)  # fmt: skip
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            pool.close()
        return {"jobs": jobs, "runs": runs, "generate_seconds": round(seconds, 1),
                "when": datetime.now(UTC).isoformat(), "results": results}  # fmt: skip
    finally:
        rabbit.close()
        postgres.close()


def table(report: dict[str, Any]) -> str:
    lines = [
        f"GET over a ledger of {report['jobs']:,} jobs, {report['runs']} requests each",
        "",
        "| endpoint | p50 ms | p95 ms | target (p95) |",
        "|---|---:|---:|---|",
    ]
    for r in report["results"]:
        target = "" if r["target_ms"] is None else (
            f"< {r['target_ms']:g} ms {'met' if r['met'] else 'NOT met'}")  # fmt: skip
        lines.append(f"| {r['endpoint']} | {r['p50_ms']} | {r['p95_ms']} | {target} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000, help="ledger size (1,000,000)")
    parser.add_argument("--runs", type=int, default=200, help="requests per endpoint (200)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests first (20)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    report = run(args.jobs, args.runs, args.warmup)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    missed = [r for r in report["results"] if r["met"] is False]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
