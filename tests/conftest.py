"""Shared fixtures for Herald's tests.

Real services run on loopback; their machinery lives in ``tests/services/``. Session-scoped
servers start lazily, only when a test asks for them. A service that cannot start skips
its tests locally and fails them under ``CI=true`` (see ``tests.services.require_service``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.services import ServiceUnavailable, require_service
from tests.services.openai_server import FakeOpenAIServer, start_openai_server
from tests.services.postgres import PostgresService, fresh_database_name, start_postgres
from tests.services.rabbitmq import RabbitMQService, fresh_vhost_name, start_rabbitmq
from tests.services.smtp import SmtpServer, start_smtp

# =============================================================================================
# Real services (test infrastructure). Application fixtures go in their own section below.
# =============================================================================================


def pytest_configure(config: pytest.Config) -> None:
    # aiosmtpd warns on every connection when AUTH is allowed without TLS; on loopback it is fine.
    config.addinivalue_line(
        "filterwarnings", "ignore:Requiring AUTH while not requiring TLS:UserWarning"
    )


# --- PostgreSQL: one server per session, one fresh database per test ------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresService]:
    """The session's PostgreSQL (``HERALD_TEST_DATABASE_URL`` or a private embedded one)."""
    try:
        server = start_postgres()
    except ServiceUnavailable as exc:
        require_service("PostgreSQL", str(exc))
    yield server
    server.close()


@pytest.fixture
def database_url(postgres_server: PostgresService) -> Iterator[str]:
    """URL of a new, empty database for this test; dropped (WITH FORCE) afterwards."""
    name = fresh_database_name()
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)


# --- RabbitMQ: one node per session, one fresh vhost per test -------------------------------


@pytest.fixture(scope="session")
def rabbitmq_server() -> Iterator[RabbitMQService]:
    """The session's RabbitMQ (``HERALD_TEST_RABBITMQ_URL`` or a private node)."""
    try:
        server = start_rabbitmq()
    except ServiceUnavailable as exc:
        require_service("RabbitMQ", str(exc))
    yield server
    server.close()


@pytest.fixture
def rabbitmq_url(rabbitmq_server: RabbitMQService) -> Iterator[str]:
    """``amqp://`` URL of a new vhost for this test (guest has all rights); deleted afterwards."""
    vhost = fresh_vhost_name()
    url = rabbitmq_server.add_vhost(vhost)
    yield url
    rabbitmq_server.delete_vhost(vhost)


# --- SMTP: a fresh recording server per test ------------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server (no AUTH, no TLS) recording every accepted message."""
    try:
        server = start_smtp()
    except ServiceUnavailable as exc:
        require_service("SMTP", str(exc))
    yield server
    server.stop()


@pytest.fixture
def make_smtp_server() -> Iterator[Callable[..., SmtpServer]]:
    """Factory for variants: ``make_smtp_server(username=, password=, starttls=, pipelining=)``."""
    servers: list[SmtpServer] = []

    def make(
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        pipelining: bool = True,
    ) -> SmtpServer:
        try:
            server = start_smtp(
                username=username, password=password, starttls=starttls, pipelining=pipelining
            )
        except ServiceUnavailable as exc:
            require_service("SMTP", str(exc))
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


# --- OpenAI-compatible API: a fresh fake per test -------------------------------------------


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    """Chat Completions server at ``.base_url``; scriptable replies, failures and latency."""
    server = start_openai_server()
    yield server
    server.stop()


# =============================================================================================
# Application fixtures (migrations, settings, workers, ...) below this line.
# =============================================================================================

# Herald's fixtures (herald_db, pool, stub_pipeline) live in tests/fixtures.py.
pytest_plugins = ["tests.fixtures"]
