"""Herald's own fixtures (the real services' fixtures are in conftest.py).

Loaded through `pytest_plugins` in conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from herald.db import connect
from herald.migrate import upgrade
from herald.testing import FakeMailer, FakeSummariser
from tests.helpers import create_app_tables, make_settings

if TYPE_CHECKING:
    from dramatiq import Worker
    from dramatiq.brokers.stub import StubBroker

    from actors.registry import Actors
    from herald.bootstrap import App
    from herald.config import Settings


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


class StubPipeline:
    """Herald built by the composition root on Dramatiq's StubBroker, with an in-process
    worker, the fakes of the adapters and a real PostgreSQL.

    `use(settings=..., mailer=..., summariser=...)` builds it again with other parts (the
    actors are declared with their services, so a change of settings is a new build).
    """

    def __init__(self, settings: Settings, pool: ConnectionPool) -> None:
        self.pool = pool
        self.mailer: Any = FakeMailer()
        self.summariser: Any = FakeSummariser()
        self.settings = settings
        self.app: App | None = None
        self.worker: Worker | None = None
        self._start()

    def _start(self) -> None:
        from dramatiq import Worker

        from herald.bootstrap import bootstrap

        self.app = bootstrap(
            self.settings, mailer=self.mailer, summariser=self.summariser, pool=self.pool
        )
        broker = self.broker
        broker.fail_fast_default = False  # failed jobs are dead-lettered on purpose here
        for actor in broker.actors.values():  # fast retries (the defaults wait seconds)
            actor.options.update(min_backoff=10, max_backoff=50)
        self.worker = Worker(broker, worker_timeout=50, worker_threads=2)
        self.worker.start()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.broker.flush_all()
            self.broker.close()
            self.worker = None

    def use(self, *, settings: Settings | None = None, mailer: Any = None,
            summariser: Any = None) -> None:  # fmt: skip
        """Build the pipeline again with these parts (the others stay)."""
        self.stop()
        self.settings = settings or self.settings
        self.mailer = mailer or self.mailer
        self.summariser = summariser or self.summariser
        self._start()

    @property
    def broker(self) -> StubBroker:
        assert self.app is not None
        return cast("StubBroker", self.app.broker)

    @property
    def actors(self) -> Actors:
        assert self.app is not None
        return self.app.actors

    def publish(self, refs: Any) -> Any:
        assert self.app is not None
        return self.app.publish(refs)

    def drain(self) -> None:
        self.broker.join("orchestrate")
        for _ in range(3):  # enrich hands off to email: join until both are empty
            self.broker.join("enrich")
            self.broker.join("email")
        assert self.worker is not None
        self.worker.join()

    def orchestrate(self) -> None:
        self.actors.orchestrate.send()
        self.drain()


@pytest.fixture
def stub_pipeline(herald_db: str, pool: ConnectionPool) -> Iterator[StubPipeline]:
    """Herald on the StubBroker, fake mailer and summariser, a real PostgreSQL."""
    pipeline = StubPipeline(make_settings(herald_db), pool)
    try:
        yield pipeline
    finally:
        pipeline.stop()


@pytest.fixture
def herald_env(herald_db, rabbitmq_url, smtp_server, openai_server, tmp_path) -> dict[str, str]:
    """Environment for `dramatiq actors` / `herald` subprocesses wired to this test's services."""
    from tests.workers import herald_environment

    return herald_environment(herald_db, rabbitmq_url, smtp_server, openai_server, tmp_path)


@pytest.fixture
def stub_pipeline_factory() -> Iterator[Any]:
    """`make(database_url, herald_toml_path)`: a StubPipeline configured by that file."""
    from herald.config import load_toml, settings_from_mapping
    from herald.db import make_pool

    made: list[tuple[StubPipeline, ConnectionPool]] = []

    def make(url: str, config: Any) -> StubPipeline:
        env = {"HERALD_DATABASE_URL": url, "HERALD_BROKER_URL": "stub://", "HERALD_WAKER": "off"}
        settings = settings_from_mapping(load_toml(config), env, config_path=str(config))
        pool = make_pool(url, max_size=8)
        pipeline = StubPipeline(settings, pool)
        made.append((pipeline, pool))
        return pipeline

    yield make
    for pipeline, pool in made:
        pipeline.stop()
        pool.close()
