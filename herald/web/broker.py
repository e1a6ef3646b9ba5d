"""RabbitMQ as the API sees it: reachable or not, and how many messages wait per queue.

One AMQP connection, kept open and used under a lock (pika's BlockingConnection is not
thread-safe), so a readiness probe costs one round trip (`basic.qos`), not a handshake.
Queue depths come from passive `queue.declare` (messages ready, consumers): AMQP has no
figure for unacknowledged messages; RabbitMQ's management API does, and Prometheus
scrapes it (rabbitmq_detailed_queue_messages_unacked).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import pika
import pika.exceptions

#: Seconds a probe waits for the broker before calling it down.
TIMEOUT_SECONDS = 2.0


class _QuietMissingQueues(logging.Filter):
    """pika logs every channel the broker closes; a passive declare of a queue nobody has
    declared yet closes one (404) on every health check: expected, not worth a warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "NOT_FOUND - no queue" not in record.getMessage()


logging.getLogger("pika.channel").addFilter(_QuietMissingQueues())


class BrokerDown(Exception):
    """The broker could not be reached; the message says why, never with credentials."""


@dataclass(frozen=True)
class QueueDepth:
    queue: str
    ready: int
    consumers: int
    exists: bool = True


class BrokerProbe(Protocol):
    def ping(self) -> None:
        """Return when the broker answered; raise BrokerDown otherwise."""
        ...

    def depths(self, queues: Iterable[str]) -> list[QueueDepth]: ...

    def close(self) -> None: ...


class InMemoryProbe:
    """Dramatiq's in-memory broker (`stub://`, the demo): always reachable, no queues."""

    def ping(self) -> None:
        return None

    def depths(self, queues: Iterable[str]) -> list[QueueDepth]:
        return [QueueDepth(q, 0, 0, exists=False) for q in queues]

    def close(self) -> None:
        return None


class AmqpProbe:
    """A RabbitMQ node (or the first of several, `;`-separated, that answers)."""

    def __init__(self, url: str) -> None:
        self._params = []
        for part in url.split(";"):
            params = pika.URLParameters(part.strip())
            params.socket_timeout = TIMEOUT_SECONDS
            params.blocked_connection_timeout = TIMEOUT_SECONDS
            params.stack_timeout = TIMEOUT_SECONDS
            params.connection_attempts = 1
            params.heartbeat = 0  # used under a lock, rarely idle long; a dead one is redialled
            self._params.append(params)
        self._lock = threading.Lock()
        self._connection: pika.BlockingConnection | None = None
        self._channel: pika.adapters.blocking_connection.BlockingChannel | None = None

    def _open(self) -> pika.adapters.blocking_connection.BlockingChannel:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._connection is None or not self._connection.is_open:
            self._connection = None
            error: Exception | None = None
            for params in self._params:
                try:
                    self._connection = pika.BlockingConnection(params)
                    break
                except (pika.exceptions.AMQPError, OSError) as exc:
                    error = exc
            if self._connection is None:
                raise BrokerDown(_describe(error))
        self._channel = self._connection.channel()
        return self._channel

    def _drop(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                connection.close()

    def ping(self) -> None:
        with self._lock:
            for attempt in (1, 2):  # a connection that died while idle gets one redial
                try:
                    self._open().basic_qos(prefetch_count=0)
                    return
                except BrokerDown:
                    raise
                except (pika.exceptions.AMQPError, OSError) as exc:
                    self._drop()
                    if attempt == 2:
                        raise BrokerDown(_describe(exc)) from None

    def depths(self, queues: Iterable[str]) -> list[QueueDepth]:
        found = []
        with self._lock:
            for queue in queues:
                try:
                    ok = self._open().queue_declare(queue, passive=True)
                    found.append(
                        QueueDepth(queue, ok.method.message_count, ok.method.consumer_count)
                    )
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:
                        raise BrokerDown(_describe(exc)) from None
                    self._channel = None  # the broker closed the channel; the connection lives
                    found.append(QueueDepth(queue, 0, 0, exists=False))
                except (pika.exceptions.AMQPError, OSError) as exc:
                    self._drop()
                    raise BrokerDown(_describe(exc)) from None
        return found

    def close(self) -> None:
        with self._lock:
            self._drop()


def _describe(exc: BaseException | None) -> str:
    """What went wrong, by type and reply text only: a URL (with its password) never."""
    if exc is None:
        return "no broker address"
    text = getattr(exc, "reply_text", "") or ""
    return f"{type(exc).__name__}{': ' + text if text else ''}"


def probe_for(broker_url: str) -> BrokerProbe:
    if broker_url.startswith("stub:"):
        return InMemoryProbe()
    return AmqpProbe(broker_url)
