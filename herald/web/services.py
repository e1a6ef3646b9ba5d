"""What the web layer needs from the composition root (herald/bootstrap.py's App)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

from herald.config import Settings
from herald.ledger import JobRef


class WebServices(Protocol):
    """Settings, the database pool with dict rows, and the two ways to reach the broker.

    Attributes or read-only properties both satisfy it. The broker itself is probed from
    `settings.broker_url` for readiness and queue depths (herald/web/broker.py).
    """

    @property
    def settings(self) -> Settings: ...

    @property
    def pool(self) -> ConnectionPool[Any]: ...

    def publish(self, refs: Sequence[JobRef]) -> Sequence[int]:
        """Publish retried jobs' messages; return the ids the broker took, in order."""
        ...

    def orchestrate_now(self) -> None:
        """Send the orchestrate message now ("Sync now"); raise when the broker refuses it."""
        ...
