"""The waker inside the workers: one worker process per machine listens for changes.

Every worker process competes for a lock file (per database); the one
holding it runs `orchestrator.waker.Waker`, which sends the orchestrate actor's
message when changes commit. The others retry the lock every few seconds, so
the waker moves to another process if its holder dies. Only on RabbitMQ (the
StubBroker of the demo and the tests orchestrates by hand); with `HERALD_WAKER=off`
the composition root leaves it out (periodiq alone then, once a minute).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Middleware

from orchestrator.waker import Waker

logger = logging.getLogger(__name__)

#: How often a process without the lock tries to take it over.
ELECTION_SECONDS = 5.0


def lock_path(database_url: str) -> Path:
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"herald-waker-{digest}.lock"


class WakerMiddleware(Middleware):
    """Runs the waker in the one worker process of this machine that holds the lock file."""

    def __init__(self, database_url: str, wake: Callable[[], Any]) -> None:
        self.database_url = database_url
        self.wake = wake
        self.waker: Waker | None = None
        self._lock_file: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        if not isinstance(broker, RabbitmqBroker):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._elect, name="herald-waker-election",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()
        if self.waker is not None:
            self.waker.stop()
            self.waker = None
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                self._lock_file.close()
            self._lock_file = None

    def _elect(self) -> None:
        url = self.database_url
        path = lock_path(url)
        while not self._stop.is_set():
            handle = path.open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                self._stop.wait(ELECTION_SECONDS)
                continue
            self._lock_file = handle
            self.waker = Waker(url, self.wake).start()
            logger.info("Waker listening for changes in process %d", os.getpid())
            return
