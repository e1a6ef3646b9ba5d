"""Digests for real: a worker (`dramatiq herald.worker:setup`), the scheduler
(`periodiq herald.worker:setup`, ticking every minute in UTC) and `herald serve` (uvicorn)
as subprocesses, on a real RabbitMQ, PostgreSQL and SMTP server.

A route in digest mode; 30 changes; each recipient's schedule due within a minute:
exactly one digest per recipient, listing 20 and "and 10 more"; the next tick sends
nothing; a change after the digest goes into the next period; a muted recipient gets
nothing; row addresses (valid, invalid, hostile) each handled; the unsubscribe link in
the digest mutes through a real HTTP request.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import sql
from tests.services import free_port, port_open, wait_until
from tests.workers import REPO, Worker, orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "s" * 48
TOKENS = "operator:" + "o" * 24
HERALD_TOML = """
[mail]
from = "Herald <herald@example.com>"

[ai]
enabled = false

[api]
public_url = "http://127.0.0.1:{port}"

[retries.send_digest]
min_backoff_ms = 200
max_backoff_ms = 1000

[[routes]]
name = "class-digest"
table = "classes"
operations = ["INSERT", "UPDATE"]
recipients = ["Ops <ops@example.com>", "muted@example.com"]
recipient_fields = ["coordinator_email"]
mode = "digest"
digest = "daily 09:00"
digest_timezone = "Europe/London"
digest_max_items = 20
"""


def herald(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "herald.cli.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


class Process:
    """A Herald subprocess in its own process group, its output in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


SERVE = (
    "from herald.bootstrap import bootstrap; from herald.config import load_settings; "
    "from herald.web.serve import serve; import sys; "
    "serve(bootstrap(load_settings()), '127.0.0.1', int(sys.argv[1]))"
)


@pytest.fixture
def live(herald_db, rabbitmq_url, smtp_server, tmp_path) -> Iterator[dict[str, str]]:
    port = free_port()
    config = tmp_path / "herald.toml"
    config.write_text(HERALD_TOML.format(port=port))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))},
        "HERALD_DATABASE_URL": herald_db, "HERALD_BROKER_URL": rabbitmq_url,
        "HERALD_SMTP_URL": smtp_server.url, "HERALD_CONFIG": str(config),
        "HERALD_METRICS_PORT": str(free_port()), "HERALD_SECRET_KEY": SECRET,
        "HERALD_API_TOKENS": TOKENS, "PYTHONUNBUFFERED": "1", "HERALD_SERVE_PORT": str(port),
    }  # fmt: skip
    sql(herald_db, "ALTER TABLE classes ADD COLUMN coordinator_email text")
    worker = Worker(env, tmp_path / "worker.log")
    periodiq = str(Path(sys.executable).with_name("periodiq"))
    scheduler = Process([periodiq, "herald.worker:setup"], env, tmp_path / "periodiq.log")
    server = Process([sys.executable, "-c", SERVE, str(port)], env, tmp_path / "serve.log")
    try:
        assert wait_until(lambda: port_open(port), timeout=60), (tmp_path / "serve.log").read_text()
        yield env
    finally:
        for process in (server, scheduler):
            process.stop()
        worker.stop()


def due_within_a_minute(env: dict[str, str], *addresses: str) -> datetime:
    """Give each recipient their own schedule, due at the next minute the tick will see."""
    now = datetime.now(UTC)
    at = (now + timedelta(minutes=2 if now.second > 45 else 1)).replace(second=0, microsecond=0)
    for address in addresses:
        herald(env, "digests", "set", address, f"daily {at:%H:%M}", "--timezone", "UTC")
    return at


def test_a_digest_route_on_real_services(live, herald_db, smtp_server):
    env = live
    herald(env, "recipients", "mute", "muted@example.com", "--route", "class-digest")
    coordinators = ["coach@studio.example"] * 10 + ["not an address"] * 5 + [
        "victim@example.org\r\nBcc: everyone@example.net"] * 5 + [None] * 10  # fmt: skip
    for i, coordinator in enumerate(coordinators, 1):
        sql(herald_db, "INSERT INTO classes (title, seats, coordinator_email) VALUES (%s, %s, %s)",
            (f"Class {i}", i, coordinator))  # fmt: skip
    orchestrate(env)
    items = sql(herald_db, "SELECT recipient, count(*) AS n FROM herald.digest_items "
                           "GROUP BY recipient ORDER BY recipient")  # fmt: skip
    assert items == [{"recipient": "coach@studio.example", "n": 10},
                     {"recipient": "ops@example.com", "n": 30}]  # fmt: skip

    # The scheduler creates each recipient's schedule (the route's) at its next tick; their
    # own schedule makes it due within a minute.
    due = due_within_a_minute(env, "ops@example.com", "coach@studio.example")
    assert wait_until(lambda: len(smtp_server.messages) >= 2, timeout=180), "no digests"
    time.sleep(2)
    received = smtp_server.messages
    assert sorted(m.rcpt_tos[0] for m in received) == ["coach@studio.example", "ops@example.com"]
    ops = next(m for m in received if m.rcpt_tos == ["ops@example.com"])
    coach = next(m for m in received if m.rcpt_tos == ["coach@studio.example"])
    ops_body = ops.message.get_body(("plain",)).get_content()
    assert ops_body.count(" · change #") == 20 and "and 10 more changes" in ops_body
    assert coach.message.get_body(("plain",)).get_content().count(" · change #") == 10
    assert ops.subject == "Daily digest: 30 changes to Classes"
    assert all(m.message_id.startswith("<herald.d") for m in received)
    for m in received:  # the hostile row value is shown in the body, never in a header
        headers = m.data.split(b"\r\n\r\n", 1)[0]
        assert b"everyone" not in headers and b"Bcc" not in headers and len(m.rcpt_tos) == 1
    runs = sql(herald_db, "SELECT recipient, items, status, period_end, sent_at "
                          "FROM herald.digest_runs ORDER BY recipient")  # fmt: skip
    assert [(r["recipient"], r["items"], r["status"]) for r in runs] == [
        ("coach@studio.example", 10, "sent"), ("ops@example.com", 30, "sent")]  # fmt: skip
    assert all(r["period_end"] == due for r in runs)
    lateness = [(r["sent_at"] - r["period_end"]).total_seconds() for r in runs]
    skips = sql(herald_db, "SELECT reason, count(*) AS n FROM herald.recipient_skips "
                           "GROUP BY reason ORDER BY reason")  # fmt: skip
    assert skips == [{"reason": "invalid_address", "n": 10}, {"reason": "muted", "n": 30},
                     {"reason": "no_address", "n": 10}]  # fmt: skip

    # A change after the digest waits for the next period: the next tick sends nothing.
    sql(herald_db, "UPDATE classes SET seats = 99 WHERE title = 'Class 1'")
    orchestrate(env)
    next_minute = due + timedelta(minutes=1, seconds=10)
    time.sleep(max((next_minute - datetime.now(UTC)).total_seconds(), 0) + 5)
    assert len(smtp_server.messages) == 2
    assert len(sql(herald_db, "SELECT id FROM herald.digest_runs")) == 2
    waiting = sql(herald_db, "SELECT recipient FROM herald.digest_items WHERE run_id IS NULL "
                             "ORDER BY recipient")  # fmt: skip
    assert [w["recipient"] for w in waiting] == ["coach@studio.example", "ops@example.com"]

    # The unsubscribe link in coach's digest mutes coach for the route: a real POST to
    # `herald serve` (RFC 8058 one-click); GET first shows the confirmation page.
    link = coach.header("List-Unsubscribe").strip("<>")
    assert coach.header("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    assert link.startswith(f"http://127.0.0.1:{env['HERALD_SERVE_PORT']}/unsubscribe/")
    with urllib.request.urlopen(link, timeout=10) as page:
        assert page.status == 200 and b"Stop these emails" in page.read()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    request = urllib.request.Request(
        link, data=b"List-Unsubscribe=One-Click", method="POST", headers=form
    )
    with urllib.request.urlopen(request, timeout=10) as done:
        assert done.status == 200 and b"Unsubscribed" in done.read()
    tampered = link[:-4] + ("AAAA" if not link.endswith("AAAA") else "BBBB")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(tampered, method="POST"), timeout=10)
    assert refused.value.code == 403

    # The second period: coach is muted now (nothing), ops gets the one change.
    due_within_a_minute(env, "ops@example.com", "coach@studio.example")
    assert wait_until(lambda: len(smtp_server.messages) >= 3, timeout=180), "no second digest"
    time.sleep(5)
    assert len(smtp_server.messages) == 3
    second = smtp_server.messages[-1]
    assert second.rcpt_tos == ["ops@example.com"] and second.subject == (
        "Daily digest: 1 change to Classes")  # fmt: skip
    final = sql(herald_db, "SELECT recipient, items, status FROM herald.digest_runs "
                           "ORDER BY id")  # fmt: skip
    assert sorted((r["recipient"], r["items"], r["status"]) for r in final[2:]) == [
        ("coach@studio.example", 1, "muted"), ("ops@example.com", 1, "sent")]  # fmt: skip
    print(f"\ndigests sent: 3; items: 30 + 10 + 1; lateness after due (s): {lateness}")
