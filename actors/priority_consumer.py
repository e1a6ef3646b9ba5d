"""A consumer of a logical queue's priority queues (`email.urgent`, `email`, `email.low`)
that hands its worker the most urgent message it holds: strict priority, in process.

Why not dedicated urgent workers or weighted consumption: a worker's threads take work
from one in-memory queue, first in first out among one actor's messages, so three
independent Dramatiq consumers would put an urgent message behind whatever low ones
arrived just before it, whatever their weights. Here one channel consumes the three
queues (RabbitMQ sends up to 2 x `prefetch` of each), deliveries wait in this consumer,
and it lets at most `prefetch` out to the worker at a time, always the most urgent
first. That is what a classic queue's `x-max-priority` gives: urgent work overtakes a
backlog and waits at most behind the `prefetch` messages already handed out, and, as
with classic priorities, a flood of urgent work holds the rest back until it is done.

Messages come out under the logical queue's name (`email`, `email.DQ`), so Dramatiq's
worker, its retries and its metrics see one queue; the broker routes a retry back to its
priority's queue by its `broker_priority` (actors/quorum.py).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.broker import Consumer, MessageProxy
from dramatiq.common import q_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.logging import get_logger

#: After subscribing, how long deliveries may arrive before the first is handed out, so a
#: waiting backlog's most urgent message goes first (once per connection).
GATHER_SECONDS = 0.1

_CONNECTION_ERRORS = (
    AssertionError,
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
)


class _Delivery(MessageProxy):
    """A message as this consumer received it (its delivery tag on the channel)."""

    def __init__(self, redelivered: bool, tag: int, message: dramatiq.Message) -> None:
        super().__init__(message)
        self.redelivered = redelivered
        self._tag = tag


class PriorityConsumer(Consumer):
    """Consumes `queues` (most urgent first) on one channel as the logical `queue_name`."""

    def __init__(
        self, broker: Any, queue_name: str, queues: Sequence[str], prefetch: int, timeout: int
    ) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self.logger = get_logger(__name__, type(self))
        self.limit = max(1, prefetch)
        self.timeout = timeout / 1000
        self.known_tags: set[int] = set()
        self._held: list[deque[tuple[Any, bytes]]] = [deque() for _ in queues]
        self._lock = threading.Lock()
        self._out = 0  # handed to the worker, not yet acked or nacked
        self._waiting = False  # blocked in __next__ for a free slot or a delivery
        try:
            self.connection = pika.BlockingConnection(parameters=broker.parameters)
            self.channel = self.connection.channel()
            # Per consumer, so per queue; more than `limit`, so that while `limit` are out
            # the next urgent one is already here when a slot frees.
            self.channel.basic_qos(prefetch_count=min(2 * self.limit, 65535))
            for level, name in enumerate(queues):
                self.channel.basic_consume(name, partial(self._on_delivery, level))
            self.connection.sleep(GATHER_SECONDS)
        except _CONNECTION_ERRORS as exc:
            raise ConnectionClosed(exc) from None

    def _on_delivery(
        self, level: int, _channel: Any, method: Any, _props: Any, body: bytes
    ) -> None:
        self._held[level].append((method, body))

    # -- handing out -------------------------------------------------------------------------

    def __next__(self) -> MessageProxy | None:
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                self.connection.process_data_events(time_limit=0)
                picked = self._pick()
                if picked is not None:
                    return picked
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._waiting = True
                try:
                    self.connection.process_data_events(time_limit=remaining)
                finally:
                    self._waiting = False
        except _CONNECTION_ERRORS as exc:
            if getattr(exc, "reply_code", None) == 404:  # a queue deleted: declare it again
                self.broker.queues_pending.add(q_name(self.queue_name))
            raise ConnectionClosed(exc) from None

    def _pick(self) -> MessageProxy | None:
        """The most urgent delivery held, when the worker has room for one more."""
        while True:
            with self._lock:
                if self._out >= self.limit:
                    return None
                held = next((h for h in self._held if h), None)
                if held is None:
                    return None
                method, body = held.popleft()
            try:
                message = dramatiq.Message.decode(body)
            except DecodeError:
                self.logger.exception("Rejecting a message that does not decode.")
                self.connection.add_callback_threadsafe(
                    partial(self.channel.basic_nack, method.delivery_tag, requeue=False)
                )
                continue
            with self._lock:
                self._out += 1
            self.known_tags.add(method.delivery_tag)
            logical = message.copy(queue_name=self.queue_name)
            return _Delivery(method.redelivered, method.delivery_tag, logical)

    # -- settling ----------------------------------------------------------------------------

    def ack(self, message: Any) -> None:
        self._settle(message, partial(self.channel.basic_ack, message._tag))

    def nack(self, message: Any) -> None:
        self._settle(message, partial(self.channel.basic_nack, message._tag, requeue=False))

    def _settle(self, message: Any, action: Any) -> None:
        """Ack or nack from a worker thread, and wake `__next__` if it waits for room."""
        try:
            self.known_tags.remove(message._tag)
        except KeyError:
            # Delivered on a connection since lost: RabbitMQ has already put it back.
            self.logger.warning(
                "Not settling message %s: its connection is gone (RabbitMQ delivers it again)",
                message.message_id,
            )
            return
        with self._lock:
            self._out -= 1
        try:
            self.connection.add_callback_threadsafe(action)
            self.connection.add_callback_threadsafe(self._wake)
        except _CONNECTION_ERRORS as exc:
            raise ConnectionClosed(exc) from None

    def _wake(self) -> None:
        # A timer ends process_data_events (a thread-safe callback alone does not).
        if self._waiting:
            self.connection.call_later(0, _nothing)

    def requeue(self, messages: Any) -> None:
        """RabbitMQ puts unacked messages back when the connection closes."""

    def close(self) -> None:
        try:
            done = threading.Event()
            self.connection.add_callback_threadsafe(done.set)  # acks queued before us go out
            while not done.is_set():
                self.connection.sleep(0)
        except pika.exceptions.ConnectionWrongStateError:
            pass  # closed already (the node went away)
        except Exception:  # noqa: BLE001 - closing after a broken connection
            self.logger.debug("Could not flush callbacks before closing.", exc_info=True)
        try:
            self.channel.close()
            self.connection.close()
        except _CONNECTION_ERRORS as exc:
            raise ConnectionClosed(exc) from None


def _nothing() -> None:
    return None
