"""What a RabbitMQ node says it is, and the oldest one quorum mode can run on.

Quorum mode (`[broker] queue_type = "quorum"`, actors/quorum.py) declares queues with
at-least-once dead lettering and message TTLs, both new in RabbitMQ 3.10. The broker
refuses an older node at start; `herald check` says which node it is beforehand.
"""

from __future__ import annotations

from typing import Any

#: The oldest RabbitMQ quorum mode runs on.
QUORUM_MIN_VERSION = (3, 10)


def server_version(connection: Any) -> tuple[int, ...] | None:
    """The version a pika connection's server announced (None: not a RabbitMQ)."""
    impl = getattr(connection, "_impl", connection)  # a BlockingConnection or its impl
    props = getattr(impl, "server_properties", None) or {}
    if props.get("product") not in ("RabbitMQ", b"RabbitMQ"):
        return None
    raw = props.get("version", b"")
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    numbers = []
    for part in text.split(".")[:3]:
        digits = "".join(c for c in part[:8] if c.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


def too_old_for_quorum(version: tuple[int, ...] | None) -> bool:
    return version is not None and version[:2] < QUORUM_MIN_VERSION
