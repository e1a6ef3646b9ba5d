"""CPU per change of the enrich batch around the AI call, in-process, without HTTP.

    python -m benchmarks.enrich_cost [--changes 2000] [--rounds 3] [--cprofile out.prof]

Starts a private PostgreSQL, writes N changes of the benchmark's AI route (`bench_ai`),
orchestrates them in-process (publishing recorded, not sent), then runs every
`enrich_batch` message (`[ai] batch_size` jobs, 20) on the StubBroker through a Dramatiq
worker of one thread and Herald's middleware (the email batches it publishes stay queued
in memory). The model answers at once: the request body is built and encoded and a canned
Chat Completions answer read and sanitised as `OpenAISummariser` does, on the AI event
loop, with no HTTP. Prints, per change and as the median of `--rounds` rounds, this
process's CPU (time.process_time: the worker's side, the loop's thread included) and
PostgreSQL's (its server processes' user + system time).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import statistics
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HERALD_BROKER_URL", "stub://")
os.environ.setdefault("HERALD_METRICS_PORT", "0")

import psycopg  # noqa: E402
from psycopg.rows import dict_row  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402

from benchmarks.cpu import postmaster, seconds, tree  # noqa: E402
from benchmarks.harness import APP_TABLES, HERALD_TABLES, HERALD_TOML, insert_changes  # noqa: E402
from herald.config import settings_from_mapping  # noqa: E402
from herald.db import connect  # noqa: E402
from herald.enrich.ai import OpenAISummariser, Summary  # noqa: E402
from herald.migrate import upgrade  # noqa: E402
from tests.services.postgres import start_postgres  # noqa: E402

#: What the benchmarks' OpenAI-compatible server answers (benchmarks/openai_proc.py).
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench-model",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant",
                             "content": "A new item was added by EMAIL_1 with quantity 42."}}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 14, "total_tokens": 134},
}).encode()  # fmt: skip


class AnswersAtOnce:
    """`AsyncOpenAISummariser` without the HTTP call: the same body built and encoded, the
    same reading and sanitising of the answer."""

    def __init__(self) -> None:
        self.twin = OpenAISummariser(model="bench-model", api_key="sk-bench",
                                     base_url="http://127.0.0.1:9/v1")  # fmt: skip

    async def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        json.dumps(self.twin.request_body(changes)).encode()  # what the client sends
        return self.twin.summary_of(ANSWER)

    async def aclose(self) -> None:
        return None


def _answers_at_once(_summariser: object) -> AnswersAtOnce:
    return AnswersAtOnce()  # in place of the HTTP client


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.enrich_cost")
    p.add_argument("--changes", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cprofile", type=Path, default=None, help="profile of the last round")
    args = p.parse_args(argv)

    server = start_postgres()
    try:
        url = server.create_database("enrich_cost")
        with connect(url) as conn:
            upgrade(conn)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(APP_TABLES)
        raw = tomllib.loads(HERALD_TOML.format(batch_size=1000, email_batch=20))
        env = {"HERALD_DATABASE_URL": url, "HERALD_SMTP_URL": "smtp://127.0.0.1:9"}
        settings = settings_from_mapping(raw, env)
        pool = ConnectionPool(url, min_size=2, max_size=8, kwargs={"row_factory": dict_row},
                              open=True)  # fmt: skip
        pg = getattr(server, "pgdata", None)
        figures = [
            one_round(url, pool, settings, args, pg, profile=args.cprofile and n == args.rounds - 1)
            for n in range(args.rounds)
        ]
        pool.close()
    finally:
        server.close()
    worker = statistics.median(f[0] for f in figures)
    postgres = statistics.median(f[1] for f in figures)
    rounds = ", ".join(f"{w:.0f}/{s:.0f}" for w, s in figures)
    print(f"enrich batch, {args.changes} changes in batches of {settings.ai.batch_size}: "
          f"worker CPU {worker:.0f} µs per change, PostgreSQL {postgres:.0f} µs per change "
          f"(median of {args.rounds}; rounds worker/PostgreSQL: {rounds})")  # fmt: skip
    return 0


def one_round(url, pool, settings, args, pgdata, *, profile) -> tuple[float, float]:
    """One round: (worker µs, PostgreSQL µs) per change."""
    import dataclasses

    import dramatiq

    import actors.enrich_batch
    from actors.publish import messages_for
    from herald.bootstrap import bootstrap
    from herald.testing import FakeMailer, FakeSummariser
    from orchestrator.orchestrate import run_orchestrator

    actors.enrich_batch.async_summariser_for = _answers_at_once  # type: ignore[assignment]
    in_process = dataclasses.replace(settings, broker_url="stub://", waker=False)
    app = bootstrap(in_process, mailer=FakeMailer(), summariser=FakeSummariser(), pool=pool)
    broker = app.broker
    insert_changes(url, "bench_ai", args.changes)
    published: list = []

    def record(refs):
        published.extend(refs)
        return [r.id for r in refs]

    run_orchestrator(pool, settings, record, max_runtime=300)
    refs = [r for r in published if r.actor == "enrich"]
    units = messages_for(refs, {"enrich": settings.ai.batch_size})
    profiler = cProfile.Profile() if profile else None
    if profiler:
        _profiled(app.actors.enrich_batch, profiler)
    # One worker thread on the enrich queue: the email batches stay queued, unsent.
    worker = dramatiq.Worker(broker, queues={"enrich"}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        warm = 5  # connections, the loop's thread, caches
        _run(broker, [message for message, _ in units[:warm]])
        counted = sum(len(ids) for _, ids in units[warm:])
        pg_before = seconds(tree(postmaster(pgdata)))
        cpu = time.process_time()
        _run(broker, [message for message, _ in units[warm:]])
        cpu = time.process_time() - cpu
        pg = seconds(tree(postmaster(pgdata))) - pg_before
    finally:
        worker.stop()
    if profiler:
        profiler.dump_stats(args.cprofile)
    check(url, len(refs))
    app.broker.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {HERALD_TABLES} CASCADE")
    return cpu / counted * 1e6, pg / counted * 1e6


def _run(broker, messages) -> None:
    for message in messages:
        broker.enqueue(message)
    broker.join("enrich", fail_fast=True)


def _profiled(actor, profiler: cProfile.Profile) -> None:
    """Profile `actor`'s calls on the worker thread that makes them."""
    fn = actor.fn

    def profiled(*args, **kwargs):
        profiler.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            profiler.disable()

    actor.fn = profiled


def check(url: str, enrich_jobs: int) -> None:
    """Every enrich job complete with its summary, and an email job each."""
    with psycopg.connect(url) as conn:
        counts: dict[str, int] = dict(conn.execute(
            "SELECT actor || ':' || status, count(*) FROM herald.jobs GROUP BY 1"
        ).fetchall())  # fmt: skip
        ok = conn.execute("SELECT count(*) FROM herald.summaries WHERE status = 'ok'").fetchone()
    expected = {"enrich:complete": enrich_jobs, "send_email:pending": enrich_jobs}
    if counts != expected or ok != (enrich_jobs,):
        raise SystemExit(f"unexpected ledger after the round: {counts}, summaries ok {ok}")


if __name__ == "__main__":
    sys.exit(main())
