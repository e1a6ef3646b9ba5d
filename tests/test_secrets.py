"""No secret reaches a log, the ledger or a broker message, even when everything fails."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pika
import pytest

from tests.helpers import sql
from tests.services import free_port, wait_until
from tests.workers import REPO, Worker, orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMTP_PASSWORD = "smtp-canary-Pw-7f3a"
OPENAI_KEY = "sk-canary-key-9b2c4e"


def drain_queue(amqp_url: str, queue: str) -> list[bytes]:
    bodies: list[bytes] = []
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        while True:
            method, _props, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return bodies
            bodies.append(body)
    finally:
        connection.close()


def test_canary_secrets_appear_nowhere_when_smtp_and_the_ai_refuse_them(
    herald_env, herald_db, rabbitmq_url, make_smtp_server, openai_server, tmp_path
):
    smtp = make_smtp_server(username="herald", password="the-right-password")
    host_port = smtp.url.removeprefix("smtp://").split("@")[-1]
    env = {
        **herald_env,
        "HERALD_SMTP_URL": f"smtp://herald:{quote(SMTP_PASSWORD, safe='')}@{host_port}",
        "OPENAI_API_KEY": OPENAI_KEY,
        "HERALD_DATABASE_URL": herald_db,
    }
    openai_server.fail_next(100, status=401)  # the key is refused
    sql(herald_db, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org')")
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 3")

    log = tmp_path / "worker.log"
    worker = Worker(env, log)
    try:
        orchestrate(env)
        wait_until(
            lambda: (
                sql(
                    herald_db,
                    "SELECT count(*) AS n FROM herald.jobs WHERE status IN ('pending', 'running')",
                )[0]["n"]
                == 0
            ),
            timeout=60,
        )
    finally:
        worker.stop()

    failed = sql(herald_db, "SELECT actor, last_error FROM herald.jobs WHERE status = 'failed'")
    assert failed, "the refused credentials should have failed the email jobs"
    places = {
        "worker log": log.read_text(errors="replace"),
        "ledger": repr(sql(herald_db, "SELECT * FROM herald.jobs")),
        "deliveries": repr(sql(herald_db, "SELECT * FROM herald.deliveries")),
        "summaries": repr(sql(herald_db, "SELECT * FROM herald.summaries")),
        "dead letters": repr(
            drain_queue(rabbitmq_url, "email.XQ") + drain_queue(rabbitmq_url, "enrich.XQ")
        ),
    }
    for where, text in places.items():
        assert SMTP_PASSWORD not in text, f"SMTP password in the {where}"
        assert quote(SMTP_PASSWORD, safe="") not in text, f"SMTP password in the {where}"
        assert OPENAI_KEY not in text, f"OpenAI key in the {where}"
    assert "535" in places["ledger"] or "auth" in places["ledger"].lower()


# -- every error path: the CLI, the worker's log and the exporter, with a secret in every URL --

DB_CANARY = "db-canary-Pw-41c7"
MQ_CANARY = "mq-canary-Pw-83d0"
SMTP_CANARY = "smtp-canary-Pw-2a9e"
AI_CANARY = "sk-canary-ai-key-6f15"
CANARIES = (DB_CANARY, MQ_CANARY, SMTP_CANARY, AI_CANARY)
#: Commands that serve until stopped: run apart, with a scrape.
SERVERS = {("metrics", "serve"), ("serve",)}
#: The whole pipeline on its own embedded services: tested in test_demo and test_ai.
SKIPPED = {("demo",)}


def leaks(text: str) -> list[str]:
    """The canaries (or a recognisable piece of one) found in ``text``."""
    pieces = {c: (c, quote(c, safe=""), c[:10], c[-8:]) for c in CANARIES}
    return [c for c, forms in pieces.items() if any(f in text for f in forms)]


def closed_port() -> int:
    return free_port()  # bound, then closed: connections to it are refused


def canary_env(tmp_path: Path, *, database: str, broker: str | None = None) -> dict[str, str]:
    """Herald's environment with a canary secret in every URL and the OpenAI key."""
    config = tmp_path / "herald.toml"
    config.write_text(
        '[mail]\nfrom = "Herald <herald@example.com>"\n\n[[routes]]\nname = "members"\n'
        'table = "members"\nrecipients = ["ops@example.com"]\nai = true\n'
    )
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))},
        "HERALD_DATABASE_URL": database,
        "HERALD_BROKER_URL": broker or f"amqp://herald:{MQ_CANARY}@127.0.0.1:{closed_port()}/h",
        "HERALD_SMTP_URL": f"smtp://herald:{SMTP_CANARY}@127.0.0.1:{closed_port()}",
        "HERALD_CONFIG": str(config),
        "HERALD_METRICS_PORT": "0",
        "OPENAI_API_KEY": AI_CANARY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
        "PYTHONUNBUFFERED": "1",
    }


def bad_databases() -> dict[str, str]:
    return {
        "unreachable": f"postgresql://herald:{DB_CANARY}@127.0.0.1:{closed_port()}/herald",
        "no scheme": f"herald:{DB_CANARY}@127.0.0.1/herald",  # libpq quotes it back
        "bad port": f"postgresql://herald:{DB_CANARY}@localhost:notaport/herald",
        "bad escape": f"postgresql://herald:{DB_CANARY}%zz@localhost/herald",
    }


def cli_invocations() -> Iterator[list[str]]:
    """Every `herald` subcommand, with placeholder values for its required arguments."""
    from herald.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[list[str]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield path + list(required_arguments(parser))
            return
        for name, sub in subs[0].choices.items():
            yield from walk(sub, [*path, name])

    yield from walk(build_parser(), [])


def required_arguments(parser: argparse.ArgumentParser) -> Iterator[str]:
    for action in parser._actions:
        if action.option_strings and not action.required:
            continue
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.option_strings:
            yield action.option_strings[-1]
        yield "1" if action.type in (int, float) or action.dest.endswith("id") else "members"


def run_herald(argv: list[str], env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "herald.cli.main", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


def test_every_cli_command_fails_without_echoing_a_credential(tmp_path, herald_db):
    commands = [argv for argv in cli_invocations() if tuple(argv[:2]) not in SERVERS]
    commands = [argv for argv in commands if tuple(argv[:1]) not in SKIPPED | SERVERS]
    assert ["db", "upgrade"] in commands and ["stats"] in commands, commands
    failures = []
    databases = {**bad_databases(), "reachable": herald_db}
    for label, database in databases.items():
        env = canary_env(tmp_path, database=database)
        for argv in commands:
            for verbose in ([], ["-v"]) if label in ("no scheme", "reachable") else ([],):
                code, output = run_herald([*verbose, *argv], env)
                if leaks(output):
                    failures.append((label, argv, verbose, leaks(output), output[-600:]))
                if label != "reachable":
                    assert code != 0, (label, argv, output[-400:])
    # The broker without a scheme: its user name is no scheme, its password no error text.
    env = canary_env(tmp_path, database=herald_db, broker=f"herald:{MQ_CANARY}@rabbit:5672/h")
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")  # a change to orchestrate
    sql(
        herald_db,
        "INSERT INTO herald.notifications (id, route, table_name, change_ids, recipients) "
        "VALUES (9001, 'r', 't', '{}', '{}');"
        "INSERT INTO herald.jobs (message_id, actor, queue, notification_id, status) "
        "VALUES (gen_random_uuid(), 'send_email', 'email', 9001, 'failed')",
    )  # a failed job to retry
    for argv in (["orchestrate"], ["jobs", "retry", "--failed"], ["check"]):
        code, output = run_herald(argv, env)
        assert code != 0, (argv, output[-400:])
        if leaks(output):
            failures.append(("broker without scheme", argv, [], leaks(output), output[-600:]))
    assert not failures, "\n\n".join(map(repr, failures))


class Process:
    """A Herald process in its own session, its output in a file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def has_logged(self, text: str) -> bool:
        """`text` is in the output so far (a condition for `wait_until`)."""
        return text in self.log_path.read_text()

    def stop(self) -> str:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.log.close()
        return self.log_path.read_text(errors="replace")


def test_the_worker_log_never_holds_a_credential(tmp_path, herald_db):
    worker = [sys.executable, "-m", "dramatiq", "herald.worker:setup", "--processes", "1",
              "--threads", "2"]  # fmt: skip
    cases = {
        "broker without scheme": canary_env(
            tmp_path, database=herald_db, broker=f"herald:{MQ_CANARY}@rabbit:5672/herald"
        ),
        "broker unreachable": canary_env(tmp_path, database=herald_db),
        "broker bad port": canary_env(
            tmp_path, database=herald_db, broker=f"amqp://herald:{MQ_CANARY}@rabbit:x/herald"
        ),
        **{
            f"database {label}": canary_env(tmp_path, database=url)
            for label, url in bad_databases().items()
            if label in ("no scheme", "unreachable")
        },
    }
    failures = []
    for label, env in cases.items():
        process = Process(worker, env, tmp_path / f"worker-{label.replace(' ', '-')}.log")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.proc.wait(timeout=12)  # a refused broker URL ends it; the rest retry
        log = process.stop()
        assert log.strip(), f"{label}: the worker logged nothing"
        if leaks(log):
            failures.append((label, leaks(log), log[-1500:]))
    assert not failures, "\n\n".join(map(repr, failures))


def test_the_exporter_never_shows_a_credential(tmp_path):
    for label, database in bad_databases().items():
        port = free_port()
        env = canary_env(tmp_path, database=database)
        process = Process(
            [sys.executable, "-m", "herald.cli.main", "metrics", "serve", "--port", str(port)],
            env,
            tmp_path / f"exporter-{label.replace(' ', '-')}.log",
        )
        body = ""
        try:
            assert wait_until(functools.partial(process.has_logged, "serving"), 30)
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
                body = response.read().decode()
        finally:
            output = process.stop()
        assert "herald_exporter_up 0.0" in body, (label, body[-300:], output[-500:])
        assert "cannot connect to PostgreSQL" in output, (label, output[-500:])
        assert not leaks(body) and not leaks(output), (label, output[-800:])
