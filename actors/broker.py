"""The broker and its middleware, built from settings by the composition root.

`HERALD_BROKER_URL` picks RabbitMQ (`amqp://`, `amqps://`) with publisher confirms and
message priorities, or Dramatiq's in-memory StubBroker (`stub://`, for the demo and unit
tests). Middleware is listed explicitly: Pipelines and Callbacks are left out on purpose
(the ledger does the hand-off), and the order matters (see Ledger's docstring).
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware
from psycopg_pool import ConnectionPool

from actors.deferral import Deferrals
from actors.ledger_middleware import Ledger
from actors.periodic import PeriodicRetries
from actors.pool_sizing import PoolSizing
from actors.rabbitmq import rabbitmq_broker
from herald.config import ConfigError, Settings
from herald.redact import scheme_of
from monitoring.prometheus import Prometheus

#: The openai client's HTTP stack logs every request at INFO: hundreds of AI calls a
#: second became as many log lines through Dramatiq's log pipe (a line per call, no news
#: in it). Its warnings and errors still show; the enrich step logs its own failures.
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")

#: Classic queues are declared with x-max-priority; route priorities map into
#: 0..MAX_PRIORITY (quorum queues have none: a queue per priority, actors/quorum.py).
MAX_PRIORITY = 10

#: Periodic messages older than this are skipped by periodiq (a backlog of ticks is useless).
PERIODIC_SKIP_SECONDS = 30


def middleware(settings: Settings, pool: ConnectionPool[Any]) -> list[Middleware]:
    return [
        TimeLimit(),
        ShutdownNotifications(),
        CurrentMessage(),
        PoolSizing(pool, configured=settings.db_pool_size),
        PeriodicRetries(),  # before periodiq: a retry is never skipped as a stale tick
        PeriodiqMiddleware(skip_delay=PERIODIC_SKIP_SECONDS),
        Ledger(pool),
        # After Ledger, before Retries: its after-hook runs once Retries has decided
        # (message.failed), and a skip raised by Ledger or periodiq precedes its
        # before-hook. Serves nothing for the StubBroker or when HERALD_METRICS_PORT=0.
        Prometheus(
            host=settings.metrics_host,
            port=settings.metrics_port,
            multiproc_dir=settings.metrics_multiproc_dir,
        ),
        Retries(),
        # After Retries: its after-hook runs before Retries' and keeps a deferral (open
        # circuit, rate limit) from spending a retry or a ledger attempt.
        Deferrals(pool),
    ]


def build_broker(settings: Settings, pool: ConnectionPool[Any]) -> dramatiq.Broker:
    """The broker `settings.broker_url` names, with Herald's middleware."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    url = settings.broker_url
    if url.startswith("stub:"):
        if settings.broker.queue_type != "classic":
            raise ConfigError('[broker] queue_type = "quorum" needs RabbitMQ, not stub://')
        return StubBroker(middleware=middleware(settings, pool))
    if url.startswith(("amqp://", "amqps://")):
        # One node, or several of a cluster separated by ';' (actors/rabbitmq.py).
        return rabbitmq_broker(settings, middleware(settings, pool), max_priority=MAX_PRIORITY)
    # The scheme alone: the rest may hold a password (`herald:PASSWORD@rabbit/herald`
    # has no scheme at all, and its user name is no scheme either).
    scheme = scheme_of(url)
    raise ConfigError(
        f"HERALD_BROKER_URL: {f'unsupported scheme {scheme!r}' if scheme else 'no scheme'} "
        "(use amqp://, amqps:// or stub://)"
    )
