"""The machinery the scenarios share: services on loopback, Herald databases, worker processes.

PostgreSQL and RabbitMQ are the test suite's private servers (`tests/services/`),
the SMTP server is a fast aiosmtpd sink in this process (`benchmarks.sink`), the
OpenAI-compatible server runs in a process of its own with the latency asked for.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import psycopg

from benchmarks.sink import Sink
from herald.config import DEFAULT_MAIL_BATCH_SIZE
from herald.db import connect
from herald.migrate import upgrade
from tests.services import free_port, wait_until
from tests.services.postgres import PostgresService, start_postgres
from tests.services.rabbitmq import RabbitMQService, start_rabbitmq

REPO = Path(__file__).resolve().parents[1]

#: The two routes the scenarios use: one email per change, with or without the AI step.
HERALD_TOML = """
[mail]
from = "Herald <herald@example.com>"
batch_size = {email_batch}

[ai]
enabled = true
model = "bench-model"
timeout_seconds = 10

[orchestrator]
batch_size = {batch_size}

[[routes]]
name = "plain"
table = "bench_plain"
operations = ["INSERT"]
recipients = ["ops@example.com"]
ai = false

[[routes]]
name = "ai"
table = "bench_ai"
operations = ["INSERT"]
recipients = ["ops@example.com"]
ai = true
"""

APP_TABLES = """
CREATE TABLE bench_plain (id bigserial PRIMARY KEY, title text NOT NULL, qty int NOT NULL,
                          owner_email text);
CREATE TABLE bench_ai (id bigserial PRIMARY KEY, title text NOT NULL, qty int NOT NULL,
                       owner_email text);
SELECT herald.track('bench_plain');
SELECT herald.track('bench_ai');
"""

HERALD_TABLES = (
    "herald.change_log, herald.notifications, herald.jobs, herald.deliveries, "
    "herald.summaries, herald.orchestrator_runs"
)


def insert_changes(url: str, table: str, n: int) -> float:
    """Insert `n` rows in one statement (one change each); returns time.time() at commit."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {table} (title, qty, owner_email) "  # noqa: S608 - our own table names
            "SELECT 'Item ' || i, i %% 97, 'owner' || i || '@example.org' "
            "FROM generate_series(1, %s) AS i",
            (n,),
        )
        return time.time()


@dataclass
class Services:
    postgres: PostgresService
    rabbitmq: RabbitMQService
    sink: Sink
    tmp: Path
    openai: dict[float, tuple[subprocess.Popen[bytes], str]] = field(default_factory=dict)

    @classmethod
    def start(cls, tmp: Path) -> Services:
        postgres = start_postgres()
        rabbitmq = start_rabbitmq()
        sink = Sink().start()
        return cls(postgres, rabbitmq, sink, tmp)

    def openai_url(self, latency: float) -> str:
        if latency not in self.openai:
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.openai_proc", str(latency)],
                cwd=REPO, stdout=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
            assert proc.stdout is not None
            url = proc.stdout.readline().decode().strip()
            self.openai[latency] = (proc, url)
        return self.openai[latency][1]

    def vhost(self) -> str:
        return self.rabbitmq.add_vhost(f"bench-{uuid.uuid4().hex[:10]}")

    def database(self) -> str:
        url = self.postgres.create_database(f"bench_{uuid.uuid4().hex[:10]}")
        with connect(url) as conn:
            upgrade(conn)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(APP_TABLES)
        return url

    def drop(self, database_url: str) -> None:
        """Drop a scenario's database when it is done: vacuuming what it left behind (the
        soak writes 100,000 changes) must not run during the next scenario."""
        self.postgres.drop_database(database_url.rsplit("/", 1)[-1].split("?")[0])

    def env(self, database_url: str, broker_url: str, *, batch_size: int, ai_latency: float,
            email_batch: int = DEFAULT_MAIL_BATCH_SIZE,
            extra: dict[str, str] | None = None) -> dict[str, str]:  # fmt: skip
        config = self.tmp / f"herald-{uuid.uuid4().hex[:8]}.toml"
        config.write_text(HERALD_TOML.format(batch_size=batch_size, email_batch=email_batch))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))}
        return {
            **base,
            "HERALD_DATABASE_URL": database_url,
            "HERALD_BROKER_URL": broker_url,
            "HERALD_SMTP_URL": self.sink.url,
            "HERALD_CONFIG": str(config),
            "HERALD_METRICS_PORT": str(free_port()),
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": self.openai_url(ai_latency),
            "PYTHONUNBUFFERED": "1",
            **(extra or {}),
        }

    def stop(self) -> None:
        self.sink.stop()
        for proc, _ in self.openai.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        self.rabbitmq.close()
        self.postgres.close()


def truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # CASCADE: tables added since (digest_items references notifications) go too.
        conn.execute(f"TRUNCATE {HERALD_TABLES} CASCADE")


#: Herald's worker command's broker argument (`dramatiq herald.worker:setup`).
WORKER = "herald.worker:setup"


class WorkerGroup:
    """`dramatiq <module> --processes P --threads T [--queues ...]` in its own process group."""

    def __init__(self, env: dict[str, str], log: Path, *, processes: int, threads: int,
                 module: str = WORKER, queues: list[str] | None = None) -> None:  # fmt: skip
        self.processes = processes
        self.log_path = log
        self.log = log.open("wb")
        command = [sys.executable, "-m", "dramatiq", module,
                   "--processes", str(processes), "--threads", str(threads)]  # fmt: skip
        if queues:
            command += ["--queues", *queues]
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        ready = wait_until(
            lambda: (
                self.log_path.read_text(errors="replace").count("ready for action") >= processes
                or self.proc.poll() is not None
            ),
            timeout=60,
        )
        if not ready or self.proc.poll() is not None:
            raise RuntimeError(f"workers did not start:\n{self.log_path.read_text()[-3000:]}")

    def worker_pids(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def rss_mb(self) -> list[float]:
        """Resident memory of each worker process (the forked children), in MB."""
        out = []
        for pid in self.worker_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                out.append(psutil.Process(pid).memory_info().rss / 2**20)
        return sorted(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
