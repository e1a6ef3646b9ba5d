"""Fixtures for the HTTP API's tests (tests/test_api*.py, tests/test_admin_page.py).

The application runs in-process (FastAPI's TestClient) over the test's real PostgreSQL and
a real RabbitMQ vhost, built by Herald's composition root (`herald.bootstrap`), whose App
is what `herald serve` serves. The ledger is seeded the way production fills it: rows
change in tracked tables and the orchestrator routes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from herald.bootstrap import App, bootstrap
from herald.testing import FakeMailer, FakeSummariser
from herald.web.app import create_app
from orchestrator.orchestrate import run_orchestrator
from tests.helpers import RecordingPublisher, make_settings, sql

VIEWER_TOKEN = "viewer-token-0123456789abcdef"
OPERATOR_TOKEN = "operator-token-0123456789abcdef"
TOKENS = f"viewer:{VIEWER_TOKEN},operator:{OPERATOR_TOKEN}"
AS_VIEWER = {"Authorization": f"Bearer {VIEWER_TOKEN}"}
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@dataclass
class Api:
    """The application under test, its Herald, and the database to look at."""

    client: TestClient
    app: App
    url: str
    published: list[Any] = field(default_factory=list)

    def get(self, path: str, *, token: dict[str, str] | None = AS_VIEWER, **kw: Any) -> Any:
        return self.client.get(path, headers=token or {}, **kw)

    def post(self, path: str, *, token: dict[str, str] | None = AS_OPERATOR, **kw: Any) -> Any:
        return self.client.post(path, headers={**(token or {}), **kw.pop("headers", {})}, **kw)

    def delete(self, path: str, *, token: dict[str, str] | None = AS_OPERATOR) -> Any:
        return self.client.delete(path, headers=token or {})

    def sql(self, statement: str, params: Any = None) -> list[dict[str, Any]]:
        return sql(self.url, statement, params)

    def job(self, job_id: int) -> dict[str, Any]:
        return self.sql("SELECT * FROM herald.jobs WHERE id = %s", (job_id,))[0]


def herald_app(url: str, pool: ConnectionPool, broker_url: str, **env: str) -> App:
    settings = make_settings(
        url, None, HERALD_BROKER_URL=broker_url, HERALD_API_TOKENS=TOKENS, **env
    )
    return bootstrap(settings, pool=pool, mailer=FakeMailer(), summariser=FakeSummariser())


@pytest.fixture
def api(herald_db: str, pool: ConnectionPool, rabbitmq_url: str) -> Iterator[Api]:
    """The API on real PostgreSQL and RabbitMQ, with a viewer and an operator token."""
    app = herald_app(herald_db, pool, rabbitmq_url)
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        yield Api(client, app, herald_db)
    app.publisher.close()
    app.broker.close()


def seed(url: str, pool: ConnectionPool) -> dict[str, list[int]]:
    """A small ledger: 2 members (enrich jobs, AI route) and 2 class updates (2 emails each),
    routed by the orchestrator; then one email failed, one running, one complete.

    Returns job ids by what they are: enrich, email, failed, running, complete, pending.
    """
    sql(url, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org'), "
             "('Bob', 'bob@example.org')")  # fmt: skip
    sql(url, "INSERT INTO classes (title) VALUES ('Yoga'), ('Judo')")  # no route: skipped
    sql(url, "UPDATE classes SET seats = 5")
    run_orchestrator(pool, make_settings(url), RecordingPublisher())
    jobs = sql(url, "SELECT id, actor, recipient FROM herald.jobs ORDER BY id")
    enrich = [j["id"] for j in jobs if j["actor"] == "enrich"]
    email = [j["id"] for j in jobs if j["actor"] == "send_email"]
    failed, running, complete = email[0], email[1], email[2]
    sql(url, "UPDATE herald.jobs SET status = 'failed', attempts = 9, finished_at = now(), "
             "last_error = 'SMTPRecipientsRefused: 550 mailbox unavailable' WHERE id = %s",
        (failed,))  # fmt: skip
    sql(url, "UPDATE herald.jobs SET status = 'running', attempts = 1, started_at = now() "
             "WHERE id = %s", (running,))  # fmt: skip
    sql(url, "UPDATE herald.jobs SET status = 'complete', attempts = 1, "
             "started_at = now() - interval '2 seconds', finished_at = now() WHERE id = %s",
        (complete,))  # fmt: skip
    pending = [j for j in enrich + email if j not in (failed, running, complete)]
    return {"enrich": enrich, "email": email, "failed": [failed], "running": [running],
            "complete": [complete], "pending": pending}  # fmt: skip


@pytest.fixture
def seeded(api: Api, pool: ConnectionPool) -> dict[str, list[int]]:
    return seed(api.url, pool)
