"""The broker and its middleware, built from configuration.

`HERALD_BROKER_URL` picks RabbitMQ (`amqp://`, `amqps://`) with publisher
confirms and message priorities, or Dramatiq's in-memory StubBroker
(`stub://`, for the demo and unit tests). Middleware is listed explicitly:
Pipelines and Callbacks are left out on purpose (the ledger does the hand-off),
and the order matters (see Ledger's docstring).
"""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    CurrentMessage,
    Middleware,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from periodiq import PeriodiqMiddleware

from actors import runtime
from actors.ledger_middleware import Ledger
from actors.periodic import PeriodicRetries
from monitoring.prometheus import Prometheus

#: The openai client's HTTP stack logs every request at INFO: hundreds of AI calls a
#: second became as many log lines through Dramatiq's log pipe (a line per call, no news
#: in it). Its warnings and errors still show; the enrich step logs its own failures.
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")
for _name in QUIET_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)

#: Queues are declared with x-max-priority; route priorities map into 0..MAX_PRIORITY.
MAX_PRIORITY = 10

#: Periodic messages older than this are skipped by periodiq (a backlog of ticks is useless).
PERIODIC_SKIP_SECONDS = 30


def middleware() -> list[Middleware]:
    from actors.deferral import Deferrals

    settings = runtime.settings()
    return [
        TimeLimit(),
        ShutdownNotifications(),
        CurrentMessage(),
        PeriodicRetries(),  # before periodiq: a retry is never skipped as a stale tick
        PeriodiqMiddleware(skip_delay=PERIODIC_SKIP_SECONDS),
        Ledger(lambda: runtime.runtime().pool),
        # After Ledger, before Retries: its after-hook runs once Retries has decided
        # (message.failed), and a skip raised by Ledger or periodiq precedes its
        # before-hook. Serves nothing for the StubBroker or when HERALD_METRICS_PORT=0.
        Prometheus(host=settings.metrics_host, port=settings.metrics_port),
        Retries(),
        # After Retries: its after-hook runs before Retries' and keeps a deferral (open
        # circuit, rate limit) from spending a retry or a ledger attempt.
        Deferrals(lambda: runtime.runtime().pool),
    ]


def build_broker(url: str) -> dramatiq.Broker:
    if url.startswith("stub:"):
        return StubBroker(middleware=middleware())
    if url.startswith(("amqp://", "amqps://")):
        return RabbitmqBroker(
            url=url,
            confirm_delivery=True,
            max_priority=MAX_PRIORITY,
            middleware=middleware(),
        )
    raise ValueError(
        f"HERALD_BROKER_URL: unsupported scheme in {url.split('://')[0]!r}:// "
        "(use amqp://, amqps:// or stub://)"
    )


broker = build_broker(runtime.settings().broker_url)
dramatiq.set_broker(broker)
