"""The scenarios: each returns a dict of figures (and its own settings) for one run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import openai
import psycopg

from benchmarks.harness import REPO, Services, WorkerGroup, insert_changes, truncate
from tests.services import wait_until


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# -- the ceiling: a no-op actor ----------------------------------------------------------------


def ceiling(svc: Services, *, messages: int, processes: int, threads: int) -> dict:
    """Drain rate of `messages` no-op messages by `dramatiq benchmarks.noop` (P x T)."""
    import dramatiq
    from dramatiq.brokers.rabbitmq import RabbitmqBroker

    from actors.publish import ConfirmingPublisher

    url = svc.vhost()
    broker = RabbitmqBroker(url=url, confirm_delivery=True, max_priority=10)
    publisher = ConfirmingPublisher(broker)
    started = time.perf_counter()
    for first in range(0, messages, 1000):
        publisher.publish([
            dramatiq.Message(queue_name="noop", actor_name="noop", args=(i,), kwargs={},
                             options={})
            for i in range(first, min(messages, first + 1000))
        ])  # fmt: skip
    publish_rate = messages / (time.perf_counter() - started)
    publisher.close()
    broker.close()

    progress = svc.tmp / f"noop-{uuid.uuid4().hex[:8]}.progress"
    env = {**os.environ, "BENCH_BROKER_URL": url, "BENCH_PROGRESS": str(progress),
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    samples: list[tuple[float, int]] = []

    def total() -> int:
        latest: dict[str, int] = {}
        if progress.exists():
            for line in progress.read_text().split("\n"):
                if line:
                    pid, n = line.split()
                    latest[pid] = max(latest.get(pid, 0), int(n))
        count = sum(latest.values())
        if not samples or samples[-1][1] != count:
            samples.append((time.perf_counter(), count))
        return count

    group = WorkerGroup(env, svc.tmp / "noop.log", processes=processes, threads=threads,
                        module="benchmarks.noop")  # fmt: skip
    try:
        wait_until(lambda: total() >= messages - processes * 250, timeout=120, interval=0.02)
    finally:
        group.stop()
    (t0, n0), (t1, n1) = samples[1] if len(samples) > 1 else samples[0], samples[-1]
    return {
        "messages": messages,
        "drain_per_s": (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan"),
        "publish_confirmed_per_s": publish_rate,
    }


# -- the orchestrator alone ---------------------------------------------------------------------


def orchestrator(
    svc: Services, db: str, *, changes: int, batch_size: int, email_batch: int
) -> dict:
    """Pre-insert `changes`, then time `herald orchestrate` (claim, route, write, publish)."""
    truncate(db)
    env = svc.env(db, svc.vhost(), batch_size=batch_size, ai_latency=0.0,
                  email_batch=email_batch)  # fmt: skip
    insert_changes(db, "bench_plain", changes)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "herald.cli.main", "orchestrate", "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"herald orchestrate failed:\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    with psycopg.connect(db) as conn:
        (seconds,) = conn.execute(
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)) "
            "FROM herald.orchestrator_runs"
        ).fetchone()  # type: ignore[misc]
    assert report["published"] == changes, report
    return {
        "changes": changes,
        "batch_size": batch_size,
        "email_batch": email_batch,
        "per_s": changes / float(seconds),
        "run_seconds": float(seconds),
        "wall_seconds_with_startup": wall,
    }


# -- end to end ---------------------------------------------------------------------------------


def end_to_end(svc: Services, db: str, *, table: str, changes: int, timeout: float = 300) -> dict:
    """Insert `changes` in one statement; time from its commit to the last SMTP acceptance.

    The workers are running (with the waker); nothing else is triggered by hand.
    """
    truncate(db)
    svc.sink.reset()
    committed = insert_changes(db, table, changes)
    if not svc.sink.wait_for(changes, timeout):
        raise RuntimeError(f"only {svc.sink.count} of {changes} emails arrived in {timeout}s")
    last = max(t for t, _ in svc.sink.accepted[:changes])
    time.sleep(0.5)  # anything beyond `changes` would be a duplicate
    return {
        "changes": changes,
        "per_s": changes / (last - committed),
        "seconds": last - committed,
        "duplicates": svc.sink.count - changes,
    }


def latency(svc: Services, db: str, *, rate: float, seconds: float) -> dict:
    """Single-row autocommit inserts at a steady `rate`; change commit -> SMTP acceptance."""
    truncate(db)
    svc.sink.reset()
    n = int(rate * seconds)
    with psycopg.connect(db, autocommit=True) as conn:
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.execute(
                "INSERT INTO bench_plain (title, qty, owner_email) VALUES (%s, %s, %s)",
                (f"Item {i}", i % 97, f"owner{i}@example.org"),
            )
        achieved = n / (time.perf_counter() - start)
    if not svc.sink.wait_for(n, 60):
        raise RuntimeError(f"only {svc.sink.count} of {n} emails arrived")
    with psycopg.connect(db) as conn:
        changed: dict[int, float] = dict(
            conn.execute("SELECT id, extract(epoch FROM changed_at) FROM herald.change_log")
        )
    lat = [t - float(changed[cid]) for t, cid in svc.sink.accepted if cid in changed]
    return {
        "changes": n,
        "rate_offered_per_s": rate,
        "rate_achieved_per_s": achieved,
        "p50_s": _percentile(lat, 0.50),
        "p95_s": _percentile(lat, 0.95),
        "p99_s": _percentile(lat, 0.99),
        "max_s": max(lat),
        "mean_s": statistics.fmean(lat),
    }


def soak(svc: Services, db: str, group: WorkerGroup, *, changes: int, chunks: int) -> dict:
    """`changes` through the AI-off pipeline in `chunks`; worker RSS after each chunk."""
    truncate(db)
    per_chunk = changes // chunks
    series: list[list[float]] = []
    started = time.perf_counter()
    for index in range(chunks):
        svc.sink.reset()
        insert_changes(db, "bench_plain", per_chunk)
        if not svc.sink.wait_for(per_chunk, 300):
            raise RuntimeError(f"soak chunk {index}: {svc.sink.count} of {per_chunk} emails")
        series.append(group.rss_mb())
        if index == 0:
            truncate(db)  # keep the ledger from growing without bound across the soak
    elapsed = time.perf_counter() - started
    start, end = series[0], series[-1]
    return {
        "changes": per_chunk * chunks,
        "chunks": chunks,
        "seconds": elapsed,
        "rss_start_mb": start,
        "rss_end_mb": end,
        "rss_max_mb": max(max(s) for s in series),
        "rss_growth_pct": 100 * (sum(end) - sum(start)) / sum(start),
        "rss_series_mb": [[round(x, 1) for x in s] for s in series],
    }


# -- the seeds' design --------------------------------------------------------------------------


def seeds(svc: Services, db: str, *, changes: int, ai_latency: float) -> dict:
    """The seeds' loop: take a batch, and for each change call the AI and SMTP inline.

    Measured per change on the same servers; the seeds take 50 changes a minute, so
    their throughput is min(50/60 s, 1 / per-change cost): computed, not waited for.
    """
    import smtplib
    from email.message import EmailMessage

    truncate(db)
    insert_changes(db, "bench_ai", changes)
    client = openai.OpenAI(api_key="sk-bench", base_url=svc.openai_url(ai_latency), max_retries=0)
    smtp = smtplib.SMTP(svc.sink.host, svc.sink.port)
    svc.sink.reset()
    started = time.perf_counter()
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT id, table_name, new_row FROM herald.change_log "
            "WHERE claimed_at IS NULL ORDER BY id LIMIT %s", (changes,)
        ).fetchall()  # fmt: skip
        for change_id, table, row in rows:
            reply = client.chat.completions.create(
                model="bench-model",
                messages=[{"role": "user", "content": f"Summarise: {table} {json.dumps(row)}"}],
            )
            message = EmailMessage()
            message["From"], message["To"] = "herald@example.com", "ops@example.com"
            message["Subject"] = f"{table} changed"
            message["X-Herald-Change-Id"] = str(change_id)
            message.set_content(str(reply.choices[0].message.content))
            smtp.send_message(message)
            conn.execute(
                "UPDATE herald.change_log SET claimed_at = now(), outcome = 'routed' WHERE id = %s",
                (change_id,),
            )
            conn.commit()
    per_change = (time.perf_counter() - started) / changes
    smtp.quit()
    cadence = 50 / 60
    return {
        "changes_measured": changes,
        "ai_latency_s": ai_latency,
        "per_change_s": per_change,
        "loop_capacity_per_s": 1 / per_change,
        "per_s_at_50_per_minute": min(cadence, 1 / per_change),
    }


#: With the AI on, the enrich queue gets workers of its own (threads ~ rate x AI latency).
AI_QUEUES = ["enrich"]
OTHER_QUEUES = ["orchestrate", "email", "maintenance"]


def worker_settings(processes: int, threads: int, prefetch: int | None, queues: list[str] | None
                    ) -> dict:  # fmt: skip
    return {"processes": processes, "threads": threads,
            "dramatiq_queue_prefetch": prefetch, "queues": queues}  # fmt: skip


def prefetch_env(prefetch: int | None) -> dict[str, str]:
    return {} if prefetch is None else {"dramatiq_queue_prefetch": str(prefetch)}


def path_for_log(tmp: Path, name: str) -> Path:
    return tmp / f"{name}-{uuid.uuid4().hex[:6]}.log"


# -- quorum against classic -----------------------------------------------------------------------

#: The three brokers the quorum scenario compares, each with its own database and workers.
QUORUM_SETUPS = ("classic", "quorum_1_node", "quorum_3_nodes")
QUORUM_TOML = '\n[broker]\nqueue_type = "quorum"\n'


def quorum_vs_classic(svc: Services, tmp: Path, *, changes: int, runs: int, processes: int,
                      threads: int, batch_size: int, email_batch: int, prefetch: int | None
                      ) -> dict:  # fmt: skip
    """End to end, AI off, on classic queues (one node), quorum queues on that node, and
    quorum queues replicated on a three-node cluster (tests/services/rabbitmq_cluster.py),
    the runs interleaved so that the machine's other work weighs on each alike."""
    from tests.services.rabbitmq_cluster import start_rabbitmq_cluster

    cluster = start_rabbitmq_cluster()
    groups: list[WorkerGroup] = []
    dbs: dict[str, str] = {}
    try:
        cluster_vhost = f"bench-{uuid.uuid4().hex[:10]}"
        cluster.add_vhost(cluster_vhost)
        brokers = {"classic": svc.vhost(), "quorum_1_node": svc.vhost(),
                   "quorum_3_nodes": cluster.urls(cluster_vhost)}  # fmt: skip
        for setup in QUORUM_SETUPS:
            dbs[setup] = svc.database()
            env = svc.env(dbs[setup], brokers[setup], batch_size=batch_size, ai_latency=0.0,
                          email_batch=email_batch, extra=prefetch_env(prefetch))  # fmt: skip
            if setup != "classic":
                with Path(env["HERALD_CONFIG"]).open("a") as config:
                    config.write(QUORUM_TOML)
            groups.append(WorkerGroup(env, path_for_log(tmp, f"workers-{setup}"),
                                      processes=processes, threads=threads))  # fmt: skip
            end_to_end(svc, dbs[setup], table="bench_plain", changes=500)  # warm-up
        figures: dict[str, list[float]] = {setup: [] for setup in QUORUM_SETUPS}
        for i in range(runs):
            for setup in QUORUM_SETUPS:
                result = end_to_end(svc, dbs[setup], table="bench_plain", changes=changes)
                figures[setup].append(result["per_s"])
                print(f"    run {i + 1}/{runs} {setup}: {result['per_s']:.1f} changes/s",
                      flush=True)  # fmt: skip
    finally:
        for group in groups:
            group.stop()
        for db in dbs.values():
            svc.drop(db)
        cluster.close()
    medians = {setup: statistics.median(values) for setup, values in figures.items()}
    return {
        "changes": changes,
        "per_s": medians,
        "runs": figures,
        "ratio_quorum_3_nodes": medians["quorum_3_nodes"] / medians["classic"],
        "ratio_quorum_1_node": medians["quorum_1_node"] / medians["classic"],
        "cluster_boot_seconds": getattr(cluster, "boot_seconds", None),
    }
