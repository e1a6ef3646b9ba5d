"""The composition root: every entry point builds Herald here, from `Settings`.

The worker (`herald.worker`), periodiq, the CLI, the demo, the HTTP server and the tests
call `bootstrap(settings, ...)` and get an `App`: the pool, the adapters, the broker with
its middleware and the actors declared on it, and the publisher. Nothing else builds
these, and nothing is built at import (cosmicpython's `bootstrap.py` is the model).
Tests and the demo pass their own mailer, summariser, broker or pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dramatiq
from psycopg_pool import ConnectionPool

from actors.broker import build_broker
from actors.publish import Publisher
from actors.registry import Actors, declare_actors
from herald.config import Settings
from herald.db import DEFAULT_POOL_SIZE, make_pool
from herald.email.mailer import Mailer
from herald.email.smtp import mailer_from_url
from herald.enrich.ai import Summariser, summariser_from_settings
from herald.ledger import JobRef
from herald.services import Services
from herald.templating import check_route_templates


@dataclass(frozen=True)
class App:
    """Herald, built: what entry points use, and `close()` when they are done."""

    settings: Settings
    pool: ConnectionPool[Any]
    mailer: Mailer
    summariser: Summariser
    broker: dramatiq.Broker
    actors: Actors
    publisher: Publisher

    @property
    def services(self) -> Services:
        return Services(self.settings, self.pool, self.mailer, self.summariser)

    def publish(self, refs: Sequence[JobRef]) -> Sequence[int]:
        """Publish committed ledger jobs; returns the ids published (the outbox's contract)."""
        return self.publisher(refs)

    def orchestrate_now(self) -> None:
        """Send the orchestrate message at once ("sync now")."""
        self.actors.orchestrate.send()

    def close(self) -> None:
        self.publisher.close()
        self.mailer.close()
        self.broker.close()
        self.pool.close()


def bootstrap(
    settings: Settings,
    *,
    mailer: Mailer | None = None,
    summariser: Summariser | None = None,
    broker: dramatiq.Broker | None = None,
    pool: ConnectionPool[Any] | None = None,
) -> App:
    """Build Herald from `settings`; each keyword replaces the part it names.

    A `broker` given here must carry Herald's middleware (`actors.broker.build_broker`).
    Templates are checked first: a broken one is refused at start, naming its route.
    """
    check_route_templates(settings)
    if pool is None:
        pool = make_pool(settings.database_url, max_size=settings.db_pool_size or DEFAULT_POOL_SIZE)
    if mailer is None:
        mailer = mailer_from_url(settings.smtp_url)
    if summariser is None:
        summariser = summariser_from_settings(
            enabled=settings.ai.enabled,
            model=settings.ai.model,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.ai.timeout_seconds,
            max_retries=settings.ai.max_retries,
        )
    if broker is None:
        broker = build_broker(settings, pool)
    services = Services(settings, pool, mailer, summariser)
    publisher = Publisher(
        broker, batch_size=settings.mail_batch_size, batch_sizes={"enrich": settings.ai.batch_size}
    )
    actors = declare_actors(broker, services, publisher)
    return App(settings, pool, mailer, summariser, broker, actors, publisher)
