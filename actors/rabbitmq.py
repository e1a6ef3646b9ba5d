"""The RabbitMQ broker of a node or a cluster: HERALD_BROKER_URL's nodes, the queue type.

`HERALD_BROKER_URL` may list several nodes of one cluster separated by `;` (Dramatiq's
convention). pika tries them in order on every connection (consumers, publishers, the
batch publisher), so a lost node costs a reconnection to the next one, no restart. Each
process shuffles its list (`[broker] shuffle_nodes`, on by default): Dramatiq never
does, and every worker would otherwise crowd onto the first node.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from actors.quorum import QuorumRabbitmqBroker
from herald.config import ConfigError, Settings
from herald.ledger import ACTOR_QUEUES

SCHEMES = ("amqp://", "amqps://")


def broker_nodes(url: str) -> list[str]:
    """The node URLs of a `;`-separated HERALD_BROKER_URL, each checked for its scheme."""
    nodes = [part.strip() for part in url.split(";") if part.strip()]
    if not nodes:
        raise ConfigError("HERALD_BROKER_URL names no node")
    for index, node in enumerate(nodes, start=1):
        if not node.startswith(SCHEMES):
            # Never the URL itself in the message: it may hold a password.
            raise ConfigError(
                f"HERALD_BROKER_URL: node {index} of {len(nodes)} is not an amqp:// or "
                "amqps:// URL (several nodes are separated by ';')"
            )
    return nodes


def node_order(nodes: Sequence[str], *, shuffle: bool) -> list[str]:
    """This process's order of the nodes: shuffled, so processes spread over a cluster."""
    ordered = list(nodes)
    if shuffle:
        random.SystemRandom().shuffle(ordered)
    return ordered


def rabbitmq_broker(
    settings: Settings, middleware: list[Middleware], *, max_priority: int
) -> RabbitmqBroker:
    """A RabbitmqBroker with publisher confirms: classic queues with `max_priority`, or
    quorum queues with a queue per priority (`[broker] queue_type`)."""
    options = settings.broker
    urls = node_order(broker_nodes(settings.broker_url), shuffle=options.shuffle_nodes)
    if options.queue_type == "quorum":
        return QuorumRabbitmqBroker(
            url=urls,
            confirm_delivery=True,
            middleware=middleware,
            priority_queues=ACTOR_QUEUES.values(),
            delivery_limit=options.delivery_limit,
        )
    return RabbitmqBroker(
        url=urls, confirm_delivery=True, max_priority=max_priority, middleware=middleware
    )
