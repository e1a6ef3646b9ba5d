"""Herald's own fixtures (the real services' fixtures are in conftest.py).

Loaded through `pytest_plugins` in conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from herald.db import connect
from herald.email.smtp import FakeMailer
from herald.enrich.ai import FakeSummariser
from herald.migrate import upgrade
from tests.helpers import create_app_tables, make_settings

if TYPE_CHECKING:  # for types only: the fixture imports these (importing actors sets up the broker)
    from dramatiq import Worker
    from dramatiq.brokers.stub import StubBroker

    from actors.runtime import Runtime


@pytest.fixture
def herald_db(database_url: str) -> str:
    """A fresh database with Herald's schema and the sample application tables."""
    with connect(database_url) as conn:
        upgrade(conn)
    create_app_tables(database_url)
    return database_url


@pytest.fixture
def pool(herald_db: str) -> Iterator[ConnectionPool]:
    p = ConnectionPool(
        herald_db, min_size=1, max_size=8, kwargs={"row_factory": dict_row}, open=True
    )
    yield p
    p.close()


@dataclass
class StubPipeline:
    """Herald's actors on Dramatiq's StubBroker with an in-process worker."""

    runtime: Runtime
    broker: StubBroker
    worker: Worker
    mailer: FakeMailer
    summariser: FakeSummariser

    def drain(self) -> None:
        self.broker.join("orchestrate")
        for _ in range(3):  # enrich hands off to email: join until both are empty
            self.broker.join("enrich")
            self.broker.join("email")
        self.worker.join()

    def orchestrate(self) -> None:
        from actors.orchestrate import orchestrate

        orchestrate.send()
        self.drain()


@pytest.fixture
def stub_pipeline(herald_db: str, pool: ConnectionPool) -> Iterator[StubPipeline]:
    """Actors on the StubBroker, fake mailer and summariser, a real PostgreSQL."""
    from dramatiq import Worker

    import actors
    from actors import runtime
    from actors.runtime import Runtime

    broker = cast("StubBroker", actors.broker)  # conftest.py sets HERALD_BROKER_URL=stub://
    broker.flush_all()
    broker.fail_fast_default = False  # failed jobs are dead-lettered on purpose in these tests
    # Fast retries for tests (the defaults wait seconds).
    saved = {}
    for actor in broker.actors.values():
        saved[actor.actor_name] = dict(actor.options)
        actor.options.update(min_backoff=10, max_backoff=50)
    mailer, summariser = FakeMailer(), FakeSummariser()
    rt = Runtime(make_settings(herald_db), pool, mailer, summariser)
    runtime.install(rt)
    worker = Worker(broker, worker_timeout=50, worker_threads=2)
    worker.start()
    try:
        yield StubPipeline(rt, broker, worker, mailer, summariser)
    finally:
        worker.stop()
        broker.flush_all()
        runtime.install(None)
        for actor in broker.actors.values():
            actor.options.clear()
            actor.options.update(saved[actor.actor_name])


@pytest.fixture
def herald_env(herald_db, rabbitmq_url, smtp_server, openai_server, tmp_path) -> dict[str, str]:
    """Environment for `dramatiq actors` / `herald` subprocesses wired to this test's services."""
    from tests.workers import herald_environment

    return herald_environment(herald_db, rabbitmq_url, smtp_server, openai_server, tmp_path)
