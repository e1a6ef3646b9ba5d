"""Graceful shutdown: SIGTERM to `dramatiq actors` with jobs in flight loses nothing.

In-flight jobs finish within `--worker-shutdown-timeout` (or are handed back to RabbitMQ
when they cannot), prefetched messages are requeued, and the process exits before the
timeout. A new worker then finishes everything: every delivery ends sent, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import sql
from tests.services import wait_until
from tests.workers import REPO, Worker, orchestrate

pytestmark = pytest.mark.integration

MEMBERS = 8  # one AI-summarised email each, to ops@example.com


def start_worker(env, log, *, shutdown_timeout_ms: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "herald.worker:setup",
            "--processes",
            "1",
            "--threads",
            "4",
            "--worker-shutdown-timeout",
            str(shutdown_timeout_ms),
        ],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def sigterm_and_time_exit(proc: subprocess.Popen) -> float:
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)  # to the main process, as `docker stop` does
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return time.monotonic() - started


def everything_ends_sent_once(env, herald_db, smtp_server, tmp_path, openai_server):
    openai_server.latency = 0
    worker = Worker(env, tmp_path / "worker-after.log")
    try:
        assert wait_until(
            lambda: (
                sql(herald_db, "SELECT count(*) AS n FROM herald.deliveries WHERE status = 'sent'")[
                    0
                ]["n"]
                == MEMBERS
            ),
            timeout=60,
        )
        time.sleep(1.0)  # a duplicate would show up now
    finally:
        worker.stop()
    received = smtp_server.messages
    ambiguous = sql(herald_db, "SELECT count(*) AS n FROM herald.deliveries WHERE ambiguous")
    duplicated = len(received) - len({m.message_id for m in received})
    assert len({m.message_id for m in received}) == MEMBERS  # nothing lost
    assert duplicated <= ambiguous[0]["n"]  # no duplicate the ledger does not own up to
    assert sql(herald_db, "SELECT DISTINCT status FROM herald.jobs") == [{"status": "complete"}]
    return duplicated


@pytest.fixture
def env(herald_env):
    return {**herald_env, "HERALD_WAKER": "off"}


def test_sigterm_lets_in_flight_jobs_finish_and_exits_before_the_shutdown_timeout(
    env, herald_db, smtp_server, openai_server, tmp_path
):
    openai_server.latency = 3.0  # every AI request takes 3 s
    sql(
        herald_db,
        "INSERT INTO members (first_name) SELECT 'm' || i FROM generate_series(1, %s) AS i",
        (MEMBERS,),
    )
    proc = start_worker(env, tmp_path / "worker.log", shutdown_timeout_ms=30_000)
    orchestrate(env)
    assert wait_until(lambda: len(openai_server.requests) >= 4, timeout=30)  # 4 threads busy

    exit_seconds = sigterm_and_time_exit(proc)

    print(
        f"\nSIGTERM with 4 AI requests in flight: exited in {exit_seconds:.1f}s "
        f"(shutdown timeout 30s), exit status {proc.returncode}"
    )
    assert exit_seconds < 30
    assert proc.returncode == 0
    finished = sql(
        herald_db,
        "SELECT count(*) AS n FROM herald.jobs WHERE actor = 'enrich' AND status = 'complete'",
    )[0]["n"]
    assert finished >= 4  # the in-flight summaries completed before the process left
    assert sql(herald_db, "SELECT count(*) AS n FROM herald.jobs WHERE status = 'running'") == [
        {"n": 0}
    ]  # nothing left half-done

    everything_ends_sent_once(env, herald_db, smtp_server, tmp_path, openai_server)
    assert len(openai_server.requests) == MEMBERS  # no summary was asked for twice


def test_jobs_that_outlast_the_shutdown_timeout_are_handed_back_and_finished_by_the_next_worker(
    env, herald_db, smtp_server, openai_server, tmp_path
):
    openai_server.latency = 12.0  # far longer than the shutdown timeout below
    sql(
        herald_db,
        "INSERT INTO members (first_name) SELECT 'm' || i FROM generate_series(1, %s) AS i",
        (MEMBERS,),
    )
    proc = start_worker(env, tmp_path / "worker.log", shutdown_timeout_ms=2_000)
    orchestrate(env)
    assert wait_until(lambda: len(openai_server.requests) >= 4, timeout=30)

    exit_seconds = sigterm_and_time_exit(proc)

    print(
        f"\nSIGTERM with 12 s AI requests in flight, shutdown timeout 2s: exited in "
        f"{exit_seconds:.1f}s, exit status {proc.returncode}"
    )
    assert exit_seconds < 12  # it did not wait for the requests
    duplicated = everything_ends_sent_once(env, herald_db, smtp_server, tmp_path, openai_server)
    assert duplicated == 0
    assert len(openai_server.requests) > MEMBERS  # the abandoned summaries were asked again
