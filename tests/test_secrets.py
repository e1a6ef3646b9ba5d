"""No secret reaches a log, the ledger or a broker message, even when everything fails."""

from __future__ import annotations

from urllib.parse import quote

import pika
import pytest

from tests.helpers import sql
from tests.services import wait_until
from tests.workers import Worker, orchestrate

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
