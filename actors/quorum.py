"""Quorum queues: Dramatiq's RabbitmqBroker declaring every queue replicated on a cluster.

A quorum queue (Raft, a replica on each node) survives the loss of a node; classic
queues are not replicated since RabbitMQ 4 removed mirroring. In quorum mode every
queue Herald declares is one: each queue, its `.DQ` (retries waiting) and its `.XQ`
(dead letters). Work queues dead-letter at least once (`x-dead-letter-strategy`, which
needs `x-overflow = reject-publish`) and give up on a message redelivered
`delivery_limit` times (a poison message that kills its worker, again and again).
Leaders are placed by the `balanced` locator, not next to whichever client declared first.

Quorum queues refuse `x-max-priority` (before RabbitMQ 4.3). So a queue whose jobs carry
a priority (enrich, email) is three queues here: `email.urgent`, `email`, `email.low`,
each with its own `.DQ`, sharing one `.XQ`. Dramatiq only knows the logical queue
(`email`): `route` picks a message's queue from its `broker_priority` when it is
published (every path: `enqueue`, retries, the batch publisher), and a worker consumes
the three on one channel, most urgent first (actors/priority_consumer.py).

What quorum queues cannot do on the node the process reached is refused at start with
`QuorumUnsupported`: a RabbitMQ older than 3.10 (no at-least-once dead lettering, no
message TTL), or a declaration the node refuses (the feature flag off, a classic queue
of the same name left from classic mode).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import dramatiq
import pika.exceptions
from dramatiq.brokers.rabbitmq import DEAD_MESSAGE_TTL, RabbitmqBroker
from dramatiq.common import dq_name, q_name, xq_name
from dramatiq.middleware import Middleware

from actors.priority_consumer import PriorityConsumer
from herald.config import ConfigError
from herald.ledger import PRIORITIES
from herald.rabbitmq_version import server_version, too_old_for_quorum

logger = logging.getLogger(__name__)

#: Each priority's queue name suffix, most urgent first ("normal" is the queue itself).
LEVELS = (("urgent", ".urgent"), ("normal", ""), ("low", ".low"))


class QuorumUnsupported(ConfigError):
    """The running RabbitMQ cannot give Herald the quorum queues it is configured for."""


def level_of(priority: int | None) -> str:
    """The priority level of a message priority (the ledger's numbers: 9, 5, 1)."""
    normal = PRIORITIES["normal"]
    if priority is None or priority == normal:
        return "normal"
    return "urgent" if priority > normal else "low"


def priority_queue(queue: str, priority: int | None) -> str:
    """The queue a job of `priority` goes to: `email.urgent`, `email` or `email.low`."""
    return queue + dict(LEVELS)[level_of(priority)]


def refuse_old(version: tuple[int, ...] | None, where: str = "RabbitMQ") -> None:
    if too_old_for_quorum(version):
        assert version is not None
        found = ".".join(map(str, version))
        raise QuorumUnsupported(
            f'[broker] queue_type = "quorum" needs RabbitMQ 3.10 or later; {where} is {found} '
            '(no at-least-once dead lettering). Upgrade, or use queue_type = "classic".'
        )


class QuorumCheck(Middleware):
    """Refuses to boot a worker whose RabbitMQ cannot run quorum queues. A RabbitMQ not
    reachable yet is no refusal: the worker waits for it as in classic mode, and the
    check runs on the first declaration."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not isinstance(broker, QuorumRabbitmqBroker):
            return
        try:
            broker.verify()
        except (pika.exceptions.AMQPConnectionError, OSError) as exc:
            logger.warning("RabbitMQ unreachable at boot (%s); checked on connecting", exc)


class QuorumRabbitmqBroker(RabbitmqBroker):
    """RabbitmqBroker declaring quorum queues, with a queue per priority where jobs have one.

    `priority_queues` names the logical queues split by priority; `delivery_limit` is the
    work queues' `x-delivery-limit`. Takes RabbitmqBroker's keywords except `max_priority`.
    """

    def __init__(
        self, *, priority_queues: Iterable[str], delivery_limit: int, **kwargs: Any
    ) -> None:
        if kwargs.get("max_priority"):
            raise QuorumUnsupported("quorum queues have no x-max-priority (before RabbitMQ 4.3)")
        super().__init__(**kwargs)
        self.priority_queues = frozenset(priority_queues)
        self.delivery_limit = delivery_limit
        self._verified = False
        self.add_middleware(QuorumCheck())

    # -- names -----------------------------------------------------------------------------

    def logical_queue(self, name: str) -> str:
        """`email.urgent` -> `email` (a name that is not a priority's queue is its own)."""
        for _, suffix in LEVELS:
            if suffix and name.endswith(suffix) and name[: -len(suffix)] in self.priority_queues:
                return name[: -len(suffix)]
        return name

    def physical_queues(self, logical: str) -> list[str]:
        """The queues behind a logical queue, most urgent first."""
        if logical in self.priority_queues:
            return [logical + suffix for _, suffix in LEVELS]
        return [logical]

    def route(self, message: dramatiq.Message) -> dramatiq.Message:
        """`message` addressed to its priority's queue: the one place that decides it."""
        logical = self.logical_queue(q_name(message.queue_name))
        if logical not in self.priority_queues:
            return message
        target = priority_queue(logical, message.options.get("broker_priority"))
        return message if target == message.queue_name else message.copy(queue_name=target)

    # -- what Dramatiq calls -----------------------------------------------------------------

    def declare_queue(self, queue_name: str, *, ensure: bool = False) -> None:
        # Dramatiq (and its worker's consumers) only ever see the logical queue.
        super().declare_queue(self.logical_queue(q_name(queue_name)), ensure=ensure)

    def enqueue(self, message: dramatiq.Message, *, delay: int | None = None) -> dramatiq.Message:
        return super().enqueue(self.route(message), delay=delay)

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        self.declare_queue(queue_name, ensure=True)
        logical = q_name(queue_name)
        suffix = queue_name[len(logical) :]  # "" or ".DQ"
        queues = [name + suffix for name in self.physical_queues(logical)]
        return PriorityConsumer(self, queue_name, queues, prefetch, timeout)

    def verify(self) -> None:
        """Connect (if not yet) and refuse a RabbitMQ that cannot run quorum queues."""
        if not self._verified:
            refuse_old(server_version(self.connection))
            self._verified = True

    def _ensure_queue(self, canonical_queue_name: str) -> None:
        if canonical_queue_name in self.queues_pending:
            self.verify()
        super()._ensure_queue(canonical_queue_name)

    # -- declarations ------------------------------------------------------------------------

    def _arguments(self, logical: str, *, work: bool) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-queue-leader-locator": "balanced",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": xq_name(logical),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # at-least-once dead lettering requires it
        }
        if work:
            arguments["x-delivery-limit"] = self.delivery_limit
        return arguments

    def _declare(self, name: str, arguments: dict[str, Any]) -> Any:
        try:
            return self.channel.queue_declare(queue=name, durable=True, arguments=arguments)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code not in (403, 405, 406, 530, 540):
                raise
            del self.connection  # the channel is closed: the next caller opens new ones
            raise QuorumUnsupported(
                f"RabbitMQ refused quorum queue {name!r} ({exc.reply_code}: "
                f"{str(exc.reply_text)[:300]}). A classic queue of that name left from "
                'queue_type = "classic" must be drained and deleted (or use a new vhost); a '
                "quorum_queue feature flag that is off must be enabled."
            ) from None

    def _declare_queue(self, queue_name: str) -> Any:
        results = [
            self._declare(name, self._arguments(queue_name, work=True))
            for name in self.physical_queues(queue_name)
        ]
        return results[len(results) // 2]  # the normal priority's

    def _declare_dq_queue(self, queue_name: str) -> Any:
        results = [
            self._declare(dq_name(name), self._arguments(queue_name, work=False))
            for name in self.physical_queues(queue_name)
        ]
        return results[len(results) // 2]

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments = {
            "x-queue-type": "quorum",
            "x-queue-leader-locator": "balanced",
            "x-message-ttl": DEAD_MESSAGE_TTL,  # static: messages expire head first
        }
        return self._declare(xq_name(queue_name), arguments)

    # -- test helpers Dramatiq offers, over every priority's queue ---------------------------

    def get_queue_message_counts(self, queue_name: str) -> tuple[int, int, int]:
        logical = self.logical_queue(q_name(queue_name))
        self.declare_queue(logical, ensure=True)
        ready = delayed = 0
        for name in self.physical_queues(logical):
            ready += self.channel.queue_declare(name, passive=True).method.message_count
            delayed += self.channel.queue_declare(dq_name(name), passive=True).method.message_count
        dead = self.channel.queue_declare(xq_name(logical), passive=True).method.message_count
        return ready, delayed, dead

    def flush(self, queue_name: str) -> None:
        logical = self.logical_queue(q_name(queue_name))
        names = [n for q in self.physical_queues(logical) for n in (q, dq_name(q))]
        for name in [*names, xq_name(logical)]:
            try:
                self.channel.queue_purge(name)
            except pika.exceptions.AMQPChannelError:
                del self.channel


def routed(broker: dramatiq.Broker, message: dramatiq.Message) -> dramatiq.Message:
    """`message` as `broker` publishes it (its priority's queue on a quorum broker)."""
    return broker.route(message) if isinstance(broker, QuorumRabbitmqBroker) else message
