"""Herald's metrics after a real run, as a real Prometheus sees them.

`dramatiq actors --processes 2` and `herald metrics serve` run as subprocesses on a
real RabbitMQ, PostgreSQL and SMTP server (which refuses one recipient for good and
two messages once). A real Prometheus scrapes the workers' endpoint, the exporter and
RabbitMQ's per-queue endpoint; its figures must equal the ledger's, and every
dashboard and alert query must run against it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import sql
from tests.services import ServiceUnavailable, free_port, port_open, require_service, wait_until
from tests.services.prometheus_server import PrometheusServer, check_dashboard_queries

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[1]

HERALD_TOML = """
[mail]
from = "Herald <herald@example.com>"

[ai]
enabled = true
model = "test-model"
timeout_seconds = 5

[retries.send_email]
min_backoff_ms = 100
max_backoff_ms = 300

[[routes]]
name = "new-members"
table = "members"
operations = ["INSERT"]
recipients = ["ops@example.com"]
ai = true

[[routes]]
name = "classes"
table = "classes"
operations = ["UPDATE"]
recipients = ["a@example.com", "gone@example.com"]
"""

MEMBERS, CLASSES = 4, 6
#: enrich per member; send_email per member (ops) and per class (two recipients).
EXPECTED_JOBS = {"enrich": MEMBERS, "send_email": MEMBERS + 2 * CLASSES}
RABBITMQ_FAMILIES = ["queue_coarse_metrics", "queue_consumer_count"]


class HeraldPrometheus(PrometheusServer):
    """The shared harness, plus RabbitMQ's per-queue endpoint (a metrics path and params)."""

    def _write_config(self) -> Path:
        import yaml

        path = super()._write_config()
        config = yaml.safe_load(path.read_text())
        for job in config["scrape_configs"]:
            if job["job_name"] == "rabbitmq":
                job["metrics_path"] = "/metrics/detailed"
                job["params"] = {"family": RABBITMQ_FAMILIES}
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path


class Process:
    """A subprocess in its own process group, so teardown takes every child with it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()

    def tail(self) -> str:
        return self.log_path.read_bytes()[-3000:].decode(errors="replace")


@pytest.fixture
def herald(herald_db, rabbitmq_url, smtp_server, openai_server, tmp_path) -> Iterator[dict]:
    config = tmp_path / "herald.toml"
    config.write_text(HERALD_TOML)
    openai_server.reply = lambda request: "Summary: a new member joined."
    worker_port, exporter_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))},
        "HERALD_DATABASE_URL": herald_db,
        "HERALD_BROKER_URL": rabbitmq_url,
        "HERALD_SMTP_URL": smtp_server.url,
        "HERALD_CONFIG": str(config),
        "HERALD_METRICS_PORT": str(worker_port),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "worker-metrics"),
        "OPENAI_API_KEY": "sk-test",
        "OPENAI_BASE_URL": openai_server.base_url,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("prometheus_multiproc_dir", None)
    worker = Process(
        [sys.executable, "-m", "dramatiq", "herald.worker:setup",
         "--processes", "2", "--threads", "4"],
        env, tmp_path / "worker.log",
    )  # fmt: skip
    exporter = Process(
        ["herald", "metrics", "serve", "--port", str(exporter_port)], env, tmp_path / "exporter.log"
    )
    try:
        for name, proc, port in (("worker", worker, worker_port),
                                 ("exporter", exporter, exporter_port)):  # fmt: skip
            assert wait_until(lambda: port_open(port) or not proc.alive(), 30)  # noqa: B023 - called at once
            assert proc.alive() and port_open(port), f"{name} did not listen:\n{proc.tail()}"
        yield {"env": env, "worker": f"127.0.0.1:{worker_port}",
               "exporter": f"127.0.0.1:{exporter_port}"}  # fmt: skip
    finally:
        worker.stop()
        exporter.stop()


def ledger_counts(url: str) -> dict[tuple[str, str], int]:
    rows = sql(url, "SELECT actor, status, count(*) AS n FROM herald.jobs GROUP BY 1, 2")
    return {(r["actor"], r["status"]): r["n"] for r in rows}


def by_actor(prom: PrometheusServer, expr: str) -> dict[str, float]:
    result = prom.query(expr)
    assert result.get("status") == "success", result
    return {s["metric"].get("actor", ""): float(s["value"][1]) for s in result["data"]["result"]}


def test_prometheus_shows_the_ledgers_pending_failed_and_completed_per_actor(
    herald: dict[str, Any], herald_db, smtp_server, rabbitmq_server
) -> None:
    smtp_server.reject_recipient("gone@example.com")  # 550 at RCPT: failed for good
    smtp_server.fail_next(2, code=451)  # two attempts refused once: retried, then sent
    sql(herald_db, "INSERT INTO members (first_name, email) "
                   "SELECT 'Ann' || i, 'ann' || i || '@example.org' FROM generate_series(1, %s) i",
        (MEMBERS,))  # fmt: skip
    sql(herald_db, "INSERT INTO classes (title, seats) "
                   "SELECT 'Class ' || i, 10 FROM generate_series(1, %s) i",
        (CLASSES,))  # fmt: skip
    sql(herald_db, "UPDATE classes SET seats = seats + 1")
    done = subprocess.run(["herald", "orchestrate"], cwd=REPO, env=herald["env"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr

    def settled() -> bool:
        counts = ledger_counts(herald_db)
        finished = {a: counts.get((a, "complete"), 0) + counts.get((a, "failed"), 0)
                    for a in EXPECTED_JOBS}  # fmt: skip
        return finished == EXPECTED_JOBS

    assert wait_until(settled, 40, interval=0.2), ledger_counts(herald_db)
    # Work the workers have not seen: two delayed jobs and one due now, all pending.
    sql(herald_db, "INSERT INTO herald.jobs (message_id, actor, queue, eta) "
                   "SELECT gen_random_uuid(), 'send_email', 'email', now() + interval '1 hour' "
                   "FROM generate_series(1, 2)")  # fmt: skip
    sql(
        herald_db,
        "INSERT INTO herald.jobs (message_id, actor, queue, created_at) "
        "VALUES (gen_random_uuid(), 'enrich', 'enrich', now() - interval '90 seconds')",
    )
    ledger = ledger_counts(herald_db)
    attempts = {r["actor"]: r["retries"] for r in sql(
        herald_db, "SELECT actor, sum(attempts - 1) AS retries FROM herald.jobs "
                   "WHERE status IN ('complete', 'failed') GROUP BY 1")}  # fmt: skip

    jobs = {"herald-workers": [herald["worker"]], "herald-exporter": [herald["exporter"]]}
    rabbit_port = getattr(rabbitmq_server, "prometheus_port", None)
    if rabbit_port:
        jobs["rabbitmq"] = [f"127.0.0.1:{rabbit_port}"]
    try:
        prom = HeraldPrometheus(jobs=jobs, scrape_interval="1s")
    except ServiceUnavailable as error:
        require_service("prometheus", str(error))
    try:
        prom.wait_for_scrape(scrapes=3)
        actors = sorted({a for a, _ in ledger} | set(EXPECTED_JOBS))
        want = {
            "pending": {a: float(ledger.get((a, "pending"), 0)) for a in actors},
            "complete": {a: float(ledger.get((a, "complete"), 0)) for a in actors},
            "failed": {a: float(ledger.get((a, "failed"), 0)) for a in actors},
            "retried": {a: float(attempts.get(a, 0)) for a in actors},
        }
        queries = {
            "pending": "sum by (actor) (herald_jobs_pending)",
            "complete": "sum by (actor) (herald_jobs_completed_total)",
            "failed": "sum by (actor) (herald_jobs_failed_total)",
            "retried": "sum by (actor) (herald_jobs_retried_total)",
        }

        def scraped() -> dict[str, dict[str, float]]:
            return {k: {a: v for a, v in by_actor(prom, q).items() if a in actors}
                    for k, q in queries.items()}  # fmt: skip

        wait_until(lambda: scraped() == want, 10, interval=0.5)
        got = scraped()
        running = by_actor(prom, "sum by (actor) (herald_jobs_running)")
        deliveries = {s["metric"]["status"]: float(s["value"][1]) for s in prom.query(
            "sum by (status) (herald_deliveries_total)")["data"]["result"]}  # fmt: skip
        tokens = prom.query("sum(herald_ai_tokens_total)")["data"]["result"]
        oldest = by_actor(prom, "herald_jobs_oldest_pending_age_seconds")
        rabbit = prom.query('count(rabbitmq_detailed_queue_consumers{queue=~"email|enrich"})')
        print(
            f"\nledger  : {want}\nscraped : {got}\nrunning {running} deliveries {deliveries} "
            f"ai tokens {tokens[0]['value'][1] if tokens else None} oldest due {oldest} "
            f"rabbitmq queues with consumers series: "
            f"{rabbit['data']['result'][0]['value'][1] if rabbit['data']['result'] else 0}"
        )

        assert got == want
        assert want["failed"]["send_email"] == CLASSES  # every gone@ email, once each
        assert want["retried"]["send_email"] >= 2  # the two refused DATA commands
        assert want["pending"] == {a: {"send_email": 2.0, "enrich": 1.0}.get(a, 0.0)
                                   for a in actors}  # fmt: skip
        assert all(v == 0 for v in running.values()), running
        assert deliveries["failed"] == CLASSES
        assert deliveries["sent"] + deliveries["ambiguous"] == MEMBERS + CLASSES
        assert oldest["enrich"] >= 90 and oldest["send_email"] == 0  # delayed jobs are not due

        problems = check_dashboard_queries(prom, headline_must_have_data=True)
        assert not problems, "\n".join(problems)
    finally:
        prom.stop()
