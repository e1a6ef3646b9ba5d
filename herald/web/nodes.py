"""Each RabbitMQ node of a `;`-separated HERALD_BROKER_URL, for `/readyz` and `/health`.

The broker probe (herald/web/broker.py) answers "can Herald publish": the first node that
answers is enough. An operator also wants to see a node that is down before the next one
goes, so each node is dialled too (in parallel, bounded by `TIMEOUT_SECONDS`): a node down
while another answers is a warning, not a failure (Herald carries on without it).
Addresses are host:port only, never the URL (it holds the password).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pika
import pika.exceptions

from herald.web.broker import TIMEOUT_SECONDS


@dataclass(frozen=True)
class NodeStatus:
    address: str
    up: bool
    ms: float | None = None
    error: str | None = None


def broker_nodes(url: str) -> list[str]:
    return [part.strip() for part in url.split(";") if part.strip()]


def address_of(node: str) -> str:
    parts = urlsplit(node)
    default = 5671 if parts.scheme == "amqps" else 5672
    try:
        port = parts.port or default
    except ValueError:
        port = default
    return f"{parts.hostname or 'localhost'}:{port}"


def dial(node: str) -> NodeStatus:
    """Open a connection to one node and close it again."""
    address = address_of(node)
    started = time.perf_counter()
    try:
        params = pika.URLParameters(node)
        params.socket_timeout = params.stack_timeout = TIMEOUT_SECONDS
        params.blocked_connection_timeout = TIMEOUT_SECONDS
        params.connection_attempts = 1
        connection = pika.BlockingConnection(params)
    except (pika.exceptions.AMQPError, OSError, ValueError) as exc:
        return NodeStatus(address, False, error=type(exc).__name__)
    ms = round((time.perf_counter() - started) * 1000, 3)
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        connection.close()
    return NodeStatus(address, True, ms)


def node_statuses(broker_url: str) -> list[NodeStatus]:
    """Every node's status when the URL lists several (one node: the probe says it all)."""
    nodes = broker_nodes(broker_url)
    if len(nodes) < 2 or not all(n.startswith(("amqp://", "amqps://")) for n in nodes):
        return []
    with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(dial, nodes))
