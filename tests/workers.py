"""Herald as subprocesses for real-service tests: `dramatiq actors` and the orchestrator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.services import free_port

REPO = Path(__file__).resolve().parents[1]

HERALD_TOML = """
[mail]
from = "Herald <herald@example.com>"

[ai]
enabled = true
model = "test-model"
pii_fields = ["email", "phone", "first_name", "last_name"]
timeout_seconds = 5

[retries.enrich]
min_backoff_ms = 200
max_backoff_ms = 1000

[retries.send_email]
min_backoff_ms = 200
max_backoff_ms = 1000

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
recipients = ["a@example.com", "b@example.com"]
"""


def herald_environment(herald_db, rabbitmq_url, smtp_server, openai_server, tmp_path):
    """Environment for Herald subprocesses wired to this test's services."""
    config = tmp_path / "herald.toml"
    config.write_text(HERALD_TOML)
    openai_server.reply = lambda request: "Summary: a new member joined the studio."
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))},
        "HERALD_DATABASE_URL": herald_db,
        "HERALD_BROKER_URL": rabbitmq_url,
        "HERALD_SMTP_URL": smtp_server.url,
        "HERALD_CONFIG": str(config),
        "HERALD_METRICS_PORT": str(free_port()),
        "OPENAI_API_KEY": "sk-test-canary-key",
        "OPENAI_BASE_URL": openai_server.base_url,
        "PYTHONUNBUFFERED": "1",
    }


class Worker:
    """`dramatiq actors` in its own process group, so SIGKILL takes every process."""

    def __init__(self, env, log: Path, threads: int = 4) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "herald.worker:setup",
                "--processes",
                "1",
                "--threads",
                str(threads),
            ],
            cwd=REPO,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def orchestrate(env) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "herald.cli.main", "orchestrate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
