"""The AI's event loop: one per worker process, on a thread of its own, started lazily.

A worker thread that waits for its own AI call bounds the calls in flight by the worker's
threads (32 threads at 200 ms: 160 calls a second at best). An enrich batch instead hands
its calls to this loop (`run`, through `asyncio.run_coroutine_threadsafe`) and waits for
them all; the loop keeps at most `[ai] max_concurrency` calls in flight for the whole
process (`slots`), whatever the threads. Nothing else runs on it, so the other actors
never wait behind it; its thread starts with the first batch, and the worker's shutdown
closes it (actors/enrich_batch.py): the client's connections are closed on the loop
they were opened on. A process forked from one that ran a loop starts its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from herald.enrich.ai_async import AsyncSummariser

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The longest `close` waits for the loop to finish its work and stop.
CLOSE_SECONDS = 10.0


class AILoop:
    """An event loop thread with the asynchronous summariser and the concurrency bound."""

    def __init__(self, make_summariser: Callable[[], AsyncSummariser], max_concurrency: int):
        self._make_summariser = make_summariser
        self.max_concurrency = max_concurrency
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        # Made on the loop, by the loop's thread, the first time they are needed.
        self._summariser: AsyncSummariser | None = None
        self._slots: asyncio.Semaphore | None = None

    # -- on the loop ---------------------------------------------------------------------

    @property
    def summariser(self) -> AsyncSummariser:
        if self._summariser is None:
            self._summariser = self._make_summariser()
        return self._summariser

    @property
    def slots(self) -> asyncio.Semaphore:
        """Calls in flight in this process: take one around each call."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._slots

    # -- from worker threads -------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coroutine` on the loop and wait for its result; past `timeout` seconds it is
        cancelled and TimeoutError raised."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the AI calls took longer than {timeout:.0f}s") from None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            thread = self._thread
            if (
                self._loop is None
                or self._pid != os.getpid()
                or not thread
                or not thread.is_alive()
            ):
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=_serve, args=(loop,), name="herald-ai-loop", daemon=True
                )
                self._summariser, self._slots = None, None
                thread.start()
                self._loop, self._thread, self._pid = loop, thread, os.getpid()
            return self._loop

    @property
    def started(self) -> bool:
        return self._loop is not None and self._pid == os.getpid()

    def close(self) -> None:
        """Cancel what is in flight, close the client, stop the loop and its thread."""
        with self._lock:
            loop, thread, pid = self._loop, self._thread, self._pid
            self._loop = self._thread = self._pid = None
        if loop is None or thread is None or pid != os.getpid():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._wind_down(), loop).result(CLOSE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - closing: reported, never raised
            logger.warning("The AI event loop did not wind down cleanly: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CLOSE_SECONDS)
        if not thread.is_alive():
            loop.close()

    async def _wind_down(self) -> None:
        current = asyncio.current_task()
        others = [t for t in asyncio.all_tasks() if t is not current]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        summariser, self._summariser, self._slots = self._summariser, None, None
        if summariser is not None:
            await summariser.aclose()
        await asyncio.get_running_loop().shutdown_default_executor()


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
