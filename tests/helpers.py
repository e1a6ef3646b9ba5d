"""Small helpers shared by Herald's tests (no fixtures here: those are in conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from herald.config import Settings, settings_from_mapping
from herald.ledger import JobRef

ROUTES: dict[str, Any] = {
    "mail": {"from": "Herald <herald@example.com>"},
    # Short breaker periods: tests that fail SMTP on purpose must not wait 30 s for a probe.
    "breakers": {"reset_seconds": 0.2},
    "ai": {
        "enabled": True,
        "model": "test-model",
        "pii_fields": ["email", "phone", "first_name", "last_name"],
    },
    "routes": [
        {
            "name": "new-members",
            "table": "members",
            "operations": ["INSERT"],
            "recipients": ["ops@example.com"],
            "ai": True,
        },
        {
            "name": "classes",
            "table": "classes",
            "operations": ["UPDATE"],
            "recipients": ["a@example.com", "b@example.com"],
            "ai": False,
        },
    ],
}


def make_settings(database_url: str, raw: dict[str, Any] | None = None, **env: str) -> Settings:
    """Settings for in-process tests: the StubBroker, no waker, unless `env` says otherwise."""
    env = {"HERALD_BROKER_URL": "stub://", "HERALD_WAKER": "off", **env}
    return settings_from_mapping(
        ROUTES if raw is None else raw, {"HERALD_DATABASE_URL": database_url, **env}
    )


def sql(url: str, statement: str, params: Any = None) -> list[dict[str, Any]]:
    """Run one statement in its own committed transaction; rows as dicts."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def create_app_tables(url: str) -> None:
    """The sample application: members (with PII) and classes, both tracked."""
    sql(
        url,
        """
        CREATE TABLE members (id serial PRIMARY KEY, first_name text, last_name text,
                              email text, phone text, note text);
        CREATE TABLE classes (id serial PRIMARY KEY, title text, seats int, status text);
        SELECT herald.track('members'); SELECT herald.track('classes');
    """,
    )


class RecordingPublisher:
    """A Publish function that records what it was asked to publish (thread-safe)."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.refs: list[JobRef] = []
        self.fail_after = fail_after
        self._lock = threading.Lock()

    def __call__(self, refs: Sequence[JobRef]) -> list[int]:
        done = []
        with self._lock:
            for ref in refs:
                if self.fail_after is not None and len(self.refs) >= self.fail_after:
                    break
                self.refs.append(ref)
                done.append(ref.id)
        return done
