"""The test services themselves work: each is reached with the client Herald really uses."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage

import openai
import pika
import psycopg
import pytest

from tests.services import require_service
from tests.services.openai_server import FakeOpenAIServer
from tests.services.postgres import LocalPostgres, PostgresService
from tests.services.rabbitmq import LocalRabbitMQ, RabbitMQService
from tests.services.smtp import SmtpServer

pytestmark = pytest.mark.integration


# --- availability rule ------------------------------------------------------------------------


def test_missing_service_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="RabbitMQ unavailable: no binary"):
        require_service("RabbitMQ", "no binary")


def test_missing_service_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="RabbitMQ unavailable: no binary"):
        require_service("RabbitMQ", "no binary")


# --- PostgreSQL -------------------------------------------------------------------------------


def test_database_is_fresh_and_usable(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        conn.execute("CREATE TABLE t (id int)")
    assert name is not None and name[0].startswith("herald_test_")
    assert tables == (0,)


def test_postgres_allows_many_connections(postgres_server: PostgresService) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute("SHOW max_connections").fetchone()
    assert row is not None and int(row[0]) >= 200


def test_postgres_immediate_restart_then_reconnect(
    postgres_server: PostgresService, database_url: str
) -> None:
    if not isinstance(postgres_server, LocalPostgres):
        require_service(
            "a PostgreSQL these tests can restart",
            "HERALD_TEST_DATABASE_URL points at an external server",
        )
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (1)")
        postgres_server.restart(mode="immediate")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT id FROM kept").fetchall() == [(1,)]


# --- RabbitMQ ---------------------------------------------------------------------------------


def test_rabbitmq_publish_and_consume(rabbitmq_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare("herald-smoke", durable=True)
        channel.basic_publish("", "herald-smoke", b"hello")
        _, _, body = channel.basic_get("herald-smoke", auto_ack=True)
    finally:
        connection.close()
    assert body == b"hello"


def test_rabbitmq_vhosts_are_isolated(rabbitmq_server: RabbitMQService, rabbitmq_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        connection.channel().queue_declare("only-here")
    finally:
        connection.close()
    vhost = rabbitmq_url.rsplit("/", 1)[1]
    if isinstance(rabbitmq_server, LocalRabbitMQ):
        assert "only-here" in rabbitmq_server.queues(vhost)
        assert "only-here" not in rabbitmq_server.queues("/")
        listed = rabbitmq_server.ctl("list_vhosts", "--silent").stdout.split()
        assert vhost in listed


# --- SMTP -------------------------------------------------------------------------------------


def _mail(to: str = "ops@example.com") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "herald@example.com"
    message["To"] = to
    message["Subject"] = "Change"
    message["Message-ID"] = "<abc@herald.test>"
    message.set_content("A row changed.")
    return message


def test_smtp_records_messages(smtp_server: SmtpServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(_mail())
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["ops@example.com"]
    assert received.message_id == "<abc@herald.test>"
    assert received.message["Subject"] == "Change"
    assert smtp_server.url == f"smtp://127.0.0.1:{smtp_server.port}"


def test_smtp_scripted_failures(smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(1, code=451, text="try later")
    smtp_server.reject_recipient("gone@example.com")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as failed:
            client.send_message(_mail())
        assert failed.value.smtp_code == 451
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.send_message(_mail("gone@example.com"))
        client.send_message(_mail())
    assert len(smtp_server.wait_for(1)) == 1
    assert smtp_server.attempts == 2


def test_smtp_auth_and_starttls(make_smtp_server: Callable[..., SmtpServer]) -> None:
    server = make_smtp_server(username="herald", password="s3cret", starttls=True)
    assert server.url == f"smtp://herald:s3cret@127.0.0.1:{server.port}?starttls=true"
    assert server.cert_path is not None
    context = ssl.create_default_context(cafile=str(server.cert_path))
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.starttls(context=context)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("herald", "wrong")
        client.login("herald", "s3cret")
        client.send_message(_mail())
    assert server.wait_for(1)[0].message_id == "<abc@herald.test>"


def test_smtp_auth_without_tls(make_smtp_server: Callable[..., SmtpServer]) -> None:
    server = make_smtp_server(username="u", password="p")
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.send_message(_mail())  # AUTH required first
        client.login("u", "p")
        client.send_message(_mail())
    assert len(server.wait_for(1)) == 1


# --- OpenAI-compatible server -----------------------------------------------------------------


def _client(server: FakeOpenAIServer, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="test", **kwargs)  # type: ignore[arg-type]


def _ask(client: openai.OpenAI) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Summarise: a class moved to room 4"}],
    )


def test_openai_completion_parses_with_real_client(openai_server: FakeOpenAIServer) -> None:
    completion = _ask(_client(openai_server))
    assert "Summary" in (completion.choices[0].message.content or "")
    assert completion.usage is not None
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert openai_server.requests[0]["model"] == "gpt-4o-mini"


def test_openai_reply_function(openai_server: FakeOpenAIServer) -> None:
    openai_server.reply = lambda request: f"echo {request['messages'][0]['content']}"
    completion = _ask(_client(openai_server))
    assert completion.choices[0].message.content == "echo Summarise: a class moved to room 4"


def test_openai_fail_next_is_an_internal_server_error(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(1, status=500)
    client = _client(openai_server, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        _ask(client)
    assert _ask(client).choices[0].message.content
    assert len(openai_server.requests) == 2


def test_openai_hang_hits_client_timeout(openai_server: FakeOpenAIServer) -> None:
    openai_server.hang_next(1)
    client = _client(openai_server, max_retries=0, timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        _ask(client)
