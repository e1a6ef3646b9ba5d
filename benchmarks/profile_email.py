"""Single-process profile of the email job and the orchestrator's SQL (no RabbitMQ).

    python -m benchmarks.profile_email [--emails 2000] [--changes 10000] [--cprofile out.prof]

Starts a private PostgreSQL and the SMTP sink (in a child process), writes N changes,
orchestrates them in-process (publishing is recorded, not sent: `--only orchestrator` of
`python -m benchmarks` times it with RabbitMQ), then runs every email job one after the
other through the same middleware hooks a Dramatiq worker runs (ledger, metrics, retries,
deferrals) with the real SMTP client. Prints ms per email and changes/s of the orchestrator;
`--cprofile` writes a profile of the email loop for `python -m pstats` or snakeviz.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

os.environ.setdefault("HERALD_BROKER_URL", "stub://")
os.environ.setdefault("HERALD_METRICS_PORT", "0")

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402

from benchmarks.harness import APP_TABLES, HERALD_TABLES, HERALD_TOML, REPO, insert_changes  # noqa: E402
from herald.config import settings_from_mapping  # noqa: E402
from herald.db import connect  # noqa: E402
from herald.migrate import upgrade  # noqa: E402
from tests.services.postgres import start_postgres  # noqa: E402

SINK = """
import sys, time
from benchmarks.sink import Sink
s = Sink().start()
print(s.url, flush=True)
sys.stdin.read()
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile_email")
    p.add_argument("--emails", type=int, default=2000)
    p.add_argument("--changes", type=int, default=10000, help="orchestrator batch test size")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--cprofile", type=Path, default=None, help="profile of the email loop")
    p.add_argument("--cprofile-orchestrator", type=Path, default=None)
    args = p.parse_args(argv)

    server = start_postgres()
    sink = subprocess.Popen([sys.executable, "-c", SINK], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert sink.stdout is not None
        smtp_url = sink.stdout.readline().decode().strip()
        url = server.create_database("profile_email")
        with connect(url) as conn:
            upgrade(conn)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(APP_TABLES)
        raw = tomllib.loads(HERALD_TOML.format(batch_size=args.batch_size, email_batch=1))
        settings = settings_from_mapping(raw, {"HERALD_DATABASE_URL": url,
                                               "HERALD_SMTP_URL": smtp_url})  # fmt: skip
        pool = ConnectionPool(url, min_size=2, max_size=8, kwargs={"row_factory": dict_row},
                              open=True)  # fmt: skip
        orchestrator_figures(url, pool, settings, args)
        email_figures(url, pool, settings, args)
        pool.close()
    finally:
        sink.kill()
        server.close()
    return 0


def _recording_publish(published: list):
    def publish(refs):
        published.extend(refs)
        return [r.id for r in refs]

    return publish


def orchestrator_figures(url, pool, settings, args) -> None:
    from orchestrator.orchestrate import run_orchestrator

    insert_changes(url, "bench_plain", args.changes)
    published: list = []
    profiler = cProfile.Profile() if args.cprofile_orchestrator else None
    if profiler:
        profiler.enable()
    started = time.perf_counter()
    report = run_orchestrator(pool, settings, _recording_publish(published), max_runtime=300)
    seconds = time.perf_counter() - started
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.cprofile_orchestrator)
    print(f"orchestrator (no broker): {report.claimed} changes in {seconds:.2f}s = "
          f"{report.claimed / seconds:,.0f} changes/s")  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {HERALD_TABLES}")


def email_figures(url, pool, settings, args) -> None:
    import dataclasses

    import dramatiq

    from actors.publish import message_for
    from herald.bootstrap import bootstrap
    from herald.email.smtp import mailer_from_url
    from herald.testing import FakeSummariser
    from orchestrator.orchestrate import run_orchestrator

    mailer = mailer_from_url(settings.smtp_url)
    in_process = dataclasses.replace(settings, broker_url="stub://", waker=False)
    app = bootstrap(in_process, mailer=mailer, summariser=FakeSummariser(), pool=pool)
    broker, send_email = app.broker, app.actors.send_email
    insert_changes(url, "bench_plain", args.emails)
    published: list = []
    run_orchestrator(pool, settings, _recording_publish(published), max_runtime=300)
    refs = [r for r in published if r.actor == "send_email"]

    def one(ref) -> None:
        proxy = dramatiq.MessageProxy(message_for(ref))
        try:
            broker.emit_before("process_message", proxy)
            result = send_email(*proxy.args)
        except dramatiq.middleware.SkipMessage:
            broker.emit_after("skip_message", proxy)
            return
        except BaseException as exc:  # noqa: BLE001
            broker.emit_after("process_message", proxy, exception=exc)
            return
        broker.emit_after("process_message", proxy, result=result)

    for ref in refs[:50]:  # warm up: connections, templates, SMTP connection
        one(ref)
    times = []
    profiler = cProfile.Profile() if args.cprofile else None
    if profiler:
        profiler.enable()
    started, cpu_started = time.perf_counter(), time.process_time()
    for ref in refs[50:]:
        t0 = time.perf_counter()
        one(ref)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.cprofile)
    with psycopg.connect(url) as conn:
        counts: dict[str, int] = dict(conn.execute(
            "SELECT status, count(*) FROM herald.jobs WHERE actor = 'send_email' GROUP BY 1"
        ).fetchall())  # fmt: skip
    times.sort()
    print(
        f"email job, one thread: {len(times)} emails in {total:.2f}s = {len(times) / total:,.0f}"
        f"/s; p50 {statistics.median(times) * 1000:.2f} ms, "
        f"p95 {times[int(0.95 * (len(times) - 1))] * 1000:.2f} ms; this process's CPU "
        f"{cpu / len(times) * 1000:.2f} ms per email; jobs {counts}"
    )
    mailer.close()
    app.broker.close()


if __name__ == "__main__":
    sys.exit(main())
