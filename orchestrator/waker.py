"""The waker: LISTEN for committed changes and fire the orchestrator at once.

`herald.track` installs a statement-level trigger that notifies `herald_changes`;
PostgreSQL delivers it when the writing transaction commits. The waker listens on
its own connection and calls `wake()` (in the workers: send the orchestrate
actor's message) so a change is orchestrated within milliseconds instead of at
periodiq's next minute. Periodiq stays the safety net.

Coalescing: at most one wake-up is pending at a time. A wake-up is pending from
the moment it is sent until an orchestrator run starts (the run's first act is
to take an id from `herald.orchestrator_runs_id_seq`, which the waker reads); a
notification while one is pending needs nothing more, since that run has not
claimed yet. A burst of thousands of commits costs a handful of runs.

Nothing is lost on the way: every `recheck_seconds` without a notification (and
after every reconnect) the waker asks whether unclaimed changes wait, which
covers a run locked out by a concurrent one, a notification missed while
PostgreSQL restarted, and a wake-up message lost in the broker (a pending
wake-up older than `pending_timeout` no longer counts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from herald.db import DictConnection, connect
from herald.sql import queries

logger = logging.getLogger(__name__)

CHANNEL = "herald_changes"


class Waker:
    """Listens on `database_url` and calls `wake` when the orchestrator has work."""

    def __init__(
        self,
        database_url: str,
        wake: Callable[[], object],
        *,
        recheck_seconds: float = 0.25,
        pending_timeout: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.database_url = database_url
        self.wake = wake
        self.recheck_seconds = recheck_seconds
        self.pending_timeout = pending_timeout
        self.max_backoff = max_backoff
        self.wakeups = 0  # wake() calls made
        self.notifications = 0  # notifications received
        self._pending_mark: int | None = None  # runs started when the pending wake-up was sent
        self._pending_since = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Waker:
        self._thread = threading.Thread(target=self.run, name="herald-waker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """Listen until stopped; reconnect with capped backoff when PostgreSQL goes away."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                # herald.db.connect: a refused URL's error never quotes its password.
                with connect(self.database_url, autocommit=True) as conn:
                    conn.execute("LISTEN " + CHANNEL)
                    self.connected.set()
                    backoff = 0.1
                    self._listen(conn)
            except psycopg.Error as exc:
                self.connected.clear()
                if self._stop.is_set():
                    break
                logger.warning("Waker lost PostgreSQL (%s); reconnecting in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
            except Exception:  # a failing wake() must not end the waker
                logger.exception("Waker failed; restarting it")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
        self.connected.clear()

    # -- the loop --------------------------------------------------------------------------

    def _listen(self, conn: DictConnection) -> None:
        self._check(conn, notified=False)  # changes may have come while we were away
        while not self._stop.is_set():
            got = 0
            for _ in conn.notifies(timeout=self.recheck_seconds, stop_after=1):
                got += 1
            if got:
                # Fold whatever else already arrived into this one decision.
                for _ in conn.notifies(timeout=0.001):
                    got += 1
                self.notifications += got
            self._check(conn, notified=bool(got))

    def _runs_started(self, conn: DictConnection) -> int:
        row = conn.execute(queries["waker_runs_started"]).fetchone()
        assert row is not None  # a sequence's state: one row
        return int(row["started"])

    def _pending(self, conn: DictConnection) -> bool:
        if self._pending_mark is None:
            return False
        if self._runs_started(conn) != self._pending_mark:
            self._pending_mark = None  # a run started: it claims whatever is committed
            return False
        if time.monotonic() - self._pending_since > self.pending_timeout:
            logger.warning("Orchestrator wake-up not picked up in %.0fs; sending another",
                           self.pending_timeout)  # fmt: skip
            self._pending_mark = None
            return False
        return True

    def _check(self, conn: DictConnection, *, notified: bool) -> None:
        if self._pending(conn):
            return
        if not notified:
            row = conn.execute(queries["waker_unclaimed"]).fetchone()
            if not row or not row["waiting"]:
                return
        mark = self._runs_started(conn)
        self.wake()
        self.wakeups += 1
        self._pending_mark, self._pending_since = mark, time.monotonic()
