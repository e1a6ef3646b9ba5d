"""Publishing ledger jobs as Dramatiq messages: ids only, the ledger's message id, priority.

On RabbitMQ with publisher confirms, a batch goes out on one channel in confirm
mode and the confirms are awaited together (`ConfirmingPublisher`): Dramatiq's
own `enqueue` waits for one confirm per message (about 1,450 messages/s here),
a batch of 1,000 costs about one round trip. The messages are the ones
Dramatiq would publish: same body (`Message.encode()`), same properties
(persistent, the job's priority), `mandatory=True`, the same queue declaration
(through the broker) and the same `enqueue` middleware hooks. Anything the
batch could not confirm (a nack, an unroutable return, a lost connection) is
tried again one message at a time through `broker.enqueue`, which redeclares
queues and reconnects as Dramatiq does; what still fails stays unpublished in
the ledger and the outbox publishes it later.

Other brokers (the StubBroker of the demo and the tests) publish one by one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dramatiq
import pika
import pika.exceptions
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from actors.quorum import routed
from herald.ledger import BATCH_ACTORS, JobRef

logger = logging.getLogger(__name__)

#: Longest wait for a batch's confirms before the unconfirmed rest is retried one by one.
CONFIRM_TIMEOUT_SECONDS = 30.0


def message_for(ref: JobRef) -> dramatiq.Message:
    """The message for a job. It carries the job id and nothing personal or secret."""
    return dramatiq.Message(
        queue_name=ref.queue,
        actor_name=ref.actor,
        args=(ref.id,),
        kwargs={},
        options={"broker_priority": ref.priority},
        message_id=ref.message_id,
    )


def send_alone(broker: dramatiq.Broker, ref: JobRef, delay: int, **options: int) -> None:
    """Enqueue one job of a batch as a message of its own, after `delay` ms, with extra
    options (`retries=1` for a retry, `herald_deferrals=1` for a deferral). A message
    that cannot be sent is left to the sweeper: the job is pending in the ledger."""
    message = message_for(ref)
    message = message.copy(options={**message.options, **options})
    try:
        broker.enqueue(message, delay=delay)
    except Exception as exc:  # noqa: BLE001 - the sweeper republishes a pending job
        logger.error("Could not enqueue job %d alone (%s); the sweeper will", ref.id, exc)


class ConfirmingPublisher:
    """Publishes many messages on one confirm-mode channel per thread, then awaits the confirms."""

    def __init__(self, broker: RabbitmqBroker) -> None:
        self.broker = broker
        self._local = threading.local()

    # -- the channel -----------------------------------------------------------------------

    def _open(self) -> _Channel:
        channel = getattr(self._local, "channel", None)
        if channel is None or not channel.is_open:
            channel = _Channel(self.broker.parameters)
            self._local.channel = channel
        return channel

    def _drop(self) -> None:
        channel = getattr(self._local, "channel", None)
        self._local.channel = None
        if channel is not None:
            channel.close()

    def close(self) -> None:
        self._drop()

    # -- publishing ------------------------------------------------------------------------

    def publish(self, messages: Sequence[dramatiq.Message]) -> list[str]:
        """Publish `messages`; return the ids of those the broker confirmed, in order."""
        if not messages:
            return []
        broker = self.broker
        messages = [routed(broker, m) for m in messages]  # a priority's queue (quorum mode)
        for queue_name in {m.queue_name for m in messages}:
            broker.declare_queue(queue_name, ensure=True)
        for message in messages:
            broker.emit_before("enqueue", message, None)
        confirmed: set[str] = set()
        try:
            confirmed = self._open().publish_batch(messages)
        except (pika.exceptions.AMQPError, OSError) as exc:
            logger.warning("Batch publish interrupted (%s); retrying one by one", exc)
            self._drop()
        done: list[str] = []
        for message in messages:
            if message.message_id not in confirmed:
                try:
                    broker.enqueue(message)  # emits the enqueue hooks itself
                except Exception as exc:  # noqa: BLE001 - the caller stops here; the outbox retries
                    logger.error("Could not publish message %s (%s)", message.message_id, exc)
                    break
            else:
                broker.emit_after("enqueue", message, None)
            done.append(message.message_id)
        return done


class _Channel:
    """A pika connection and a channel in confirm mode, driven without per-message waits."""

    def __init__(self, parameters: object) -> None:
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        self._impl = self.channel._impl  # the asynchronous channel under BlockingChannel
        self._selected = False
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_select)
        self._impl.add_on_return_callback(self._on_return)
        self._wait(lambda: self._selected, CONFIRM_TIMEOUT_SECONDS)
        if not self._selected:
            raise pika.exceptions.AMQPChannelError("confirm.select was not answered")
        self._next_tag = 1  # confirm mode numbers publishes 1, 2, ... on a channel
        self._outstanding: dict[int, str] = {}  # delivery tag -> message id
        self._acked: set[str] = set()
        self._returned: set[bytes] = set()
        self._bodies: dict[int, bytes] = {}

    @property
    def is_open(self) -> bool:
        return self.connection.is_open and self.channel.is_open

    def close(self) -> None:
        try:
            if self.connection.is_open:
                self.connection.close()
        except Exception:  # noqa: BLE001, S110 - closing a broken connection
            pass

    def _on_select(self, _frame: object) -> None:
        self._selected = True

    def _on_return(self, _channel: object, _method: object, _props: object, body: bytes) -> None:
        # Unroutable (mandatory): RabbitMQ returns the message, then acks it. Not published.
        self._returned.add(body)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        tags = (
            [t for t in self._outstanding if t <= method.delivery_tag]
            if method.multiple
            else [method.delivery_tag]
        )
        for tag in tags:
            message_id = self._outstanding.pop(tag, None)
            body = self._bodies.pop(tag, b"")
            if message_id is not None and ack and body not in self._returned:
                self._acked.add(message_id)

    def _wait(self, done: Callable[[], bool], timeout: float) -> None:
        """Process I/O until `done()` or `timeout` seconds passed.

        `process_data_events(time_limit)` would sleep out its whole time limit: acks
        handled by the asynchronous channel are no events of the blocking connection.
        So the connection's own flush loop runs with our condition and a timer.
        """
        expired: list[bool] = []
        timer = self.connection.call_later(timeout, lambda: expired.append(True))
        try:
            self.connection._flush_output(lambda: done() or bool(expired))  # noqa: SLF001
        finally:
            self.connection.remove_timeout(timer)

    def publish_batch(self, messages: Sequence[dramatiq.Message]) -> set[str]:
        self._acked = set()
        self._returned = set()
        for message in messages:
            body = message.encode()
            self._impl.basic_publish(
                exchange="",
                routing_key=message.queue_name,
                body=body,
                properties=pika.BasicProperties(
                    delivery_mode=2, priority=message.options.get("broker_priority")
                ),
                mandatory=True,
            )
            self._outstanding[self._next_tag] = message.message_id
            self._bodies[self._next_tag] = body
            self._next_tag += 1
        self._wait(lambda: not self._outstanding, CONFIRM_TIMEOUT_SECONDS)
        if self._outstanding:
            # Confirms that never came: this channel's numbering can no longer be trusted.
            self._outstanding.clear()
            self._bodies.clear()
            raise pika.exceptions.AMQPChannelError("publisher confirms timed out")
        return self._acked


class Publisher:
    """Publishes ledger jobs on one broker: `publisher(refs)` returns the ids published.

    Stops at the first failure. Email jobs go out in `send_emails` batches of
    `batch_size` (one per priority), enrich jobs in `enrich_batch` batches (`batch_sizes`
    sets a size per actor: `{"enrich": 20}`), unless called with `batch=False`. Jobs not
    published stay unpublished in the ledger and are published again by a later
    orchestrator or sweeper run (the ledger is the outbox).
    """

    def __init__(
        self,
        broker: dramatiq.Broker,
        *,
        batch_size: int,
        batch_sizes: Mapping[str, int] | None = None,
    ) -> None:
        self.broker = broker
        self.batch_size = batch_size
        self.batch_sizes = {actor: batch_size for actor in BATCH_ACTORS} | dict(batch_sizes or {})
        self._confirming: ConfirmingPublisher | None = None
        if isinstance(broker, RabbitmqBroker) and broker.confirm_delivery:
            self._confirming = ConfirmingPublisher(broker)

    def __call__(self, refs: Sequence[JobRef], *, batch: bool = True) -> list[int]:
        units = messages_for(refs, self.batch_sizes if batch else 1)
        if self._confirming is not None and len(units) > 1:
            sent = set(self._confirming.publish([message for message, _ in units]))
            return [i for message, ids in units if message.message_id in sent for i in ids]
        done: list[int] = []
        for message, ids in units:
            try:
                self.broker.enqueue(message)
            except Exception as exc:  # noqa: BLE001 - reported, and the outbox retries
                logger.error("Could not publish jobs %s (%s); they will be republished", ids, exc)
                break
            done.extend(ids)
        return done

    def close(self) -> None:
        """Close this thread's confirm channel (each thread that published has its own)."""
        if self._confirming is not None:
            self._confirming.close()


def messages_for(
    refs: Sequence[JobRef], batch_size: int | Mapping[str, int]
) -> list[tuple[dramatiq.Message, list[int]]]:
    """One message per job, except email and enrich jobs: up to `batch_size` (one size, or
    one per actor) of one actor and priority share a `send_emails` or `enrich_batch`
    message (a lone one keeps its own message). In job order."""
    units: list[tuple[dramatiq.Message, list[int]]] = []
    batches: dict[tuple[str, int], list[JobRef]] = {}
    for ref in refs:
        batch_actor = BATCH_ACTORS.get(ref.actor)
        size = batch_size.get(ref.actor, 1) if isinstance(batch_size, Mapping) else batch_size
        if batch_actor is None or size < 2:
            units.append((message_for(ref), [ref.id]))
            continue
        pending = batches.setdefault((ref.actor, ref.priority), [])
        pending.append(ref)
        if len(pending) == size:
            units.append(_batch_unit(pending))
            pending.clear()
    for pending in batches.values():
        if pending:
            units.append(_batch_unit(pending))
    return units


def _batch_unit(refs: Sequence[JobRef]) -> tuple[dramatiq.Message, list[int]]:
    if len(refs) == 1:
        return message_for(refs[0]), [refs[0].id]
    ids = [ref.id for ref in refs]
    first = refs[0]
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=first.queue,
        actor_name=BATCH_ACTORS[first.actor],
        args=(ids,),
        kwargs={},
        options={"broker_priority": first.priority},
        message_id=str(uuid.uuid4()),
    )
    return message, ids
