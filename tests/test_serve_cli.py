"""`herald serve` from the command line: it answers on its port, and refuses to run open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from tests.services import free_port
from tests.workers import REPO


def serve(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "herald.cli.main", "serve", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def environment(herald_db: str, rabbitmq_url: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))}
    return {**base, "HERALD_DATABASE_URL": herald_db, "HERALD_BROKER_URL": rabbitmq_url,
            "HERALD_CONFIG": os.devnull, **extra}  # fmt: skip


def test_herald_serve_answers_livez_and_readyz_and_stops_on_sigterm(herald_db, rabbitmq_url):
    port = free_port()
    token = "operator-token-0123456789"
    proc = serve(
        environment(herald_db, rabbitmq_url, HERALD_API_TOKENS=f"operator:{token}"),
        "--port", str(port),
    )  # fmt: skip
    try:
        assert proc.stdout is not None  # serve() pipes the output
        deadline, answer = time.monotonic() + 30, None
        while answer is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=2) as r:
                    answer = r.status
            except OSError:
                time.sleep(0.2)
        assert answer == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert token not in out  # tokens never reach the log


def test_herald_serve_without_tokens_refuses_to_start_in_one_line(herald_db, rabbitmq_url):
    proc = serve(environment(herald_db, rabbitmq_url), "--port", str(free_port()))
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out.strip().startswith("herald serve:") and len(out.strip().splitlines()) == 1
