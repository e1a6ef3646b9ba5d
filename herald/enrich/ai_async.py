"""Summaries on an asyncio event loop: many AI calls in flight for one worker thread.

An enrich batch (herald/enrich/batch.py) makes its calls together on the process's event
loop (herald/enrich/loop.py). `AsyncOpenAISummariser` is `OpenAISummariser` on the
`openai` package's `AsyncOpenAI` client: the same plain JSON body through `post()`, the
same timeout and client retries (read from the synchronous client, so both follow
`[ai] timeout_seconds` and `max_retries`), the same error mapping (nothing secret in a
message) and the same reading and sanitising of what comes back. Its HTTP transport is
aiohttp's when installed (the client's `DefaultAioHttpClient`). Any other summariser (the offline
one, the tests' fakes) runs on the loop's worker threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import openai

from herald.enrich.ai import OpenAISummariser, Summariser, Summary


class AsyncSummariser(Protocol):
    async def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        """Summarise changes that are ALREADY aliased; raise Transient/PermanentError."""
        ...

    async def aclose(self) -> None:
        """Release the client's connections (on the loop it ran on)."""
        ...


class AsyncOpenAISummariser:
    """`OpenAISummariser`'s twin on `AsyncOpenAI`; see the module doc."""

    def __init__(self, twin: OpenAISummariser) -> None:
        sync = twin._client  # noqa: SLF001 - its twin's settings, read once
        self._twin = twin
        self._client = openai.AsyncOpenAI(
            api_key=sync.api_key,
            base_url=sync.base_url,
            timeout=sync.timeout,
            max_retries=sync.max_retries,
            http_client=_http_client(sync.timeout),
        )

    def __repr__(self) -> str:  # never the key
        return f"AsyncOpenAISummariser(model={self._twin.model!r})"

    async def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        try:
            response = await self._client.post(
                "/chat/completions", body=self._twin.request_body(changes), cast_to=bytes
            )
        except openai.APIError as exc:
            # The cause may quote the key or the prompt.
            raise self._twin._error(exc) from None  # noqa: SLF001
        return self._twin.summary_of(response)

    async def aclose(self) -> None:
        await self._client.close()


def _http_client(timeout: Any) -> Any:
    """The client's aiohttp transport (`openai.DefaultAioHttpClient`, the package's own
    choice "for improved concurrency performance") when aiohttp is installed: its HTTP/1.1
    connection pool costs about a third less CPU per call than httpx's with many
    connections open (docs/performance.md). None: the client's default."""
    aiohttp_client = getattr(openai, "DefaultAioHttpClient", None)
    if aiohttp_client is None:
        return None
    try:
        return aiohttp_client(timeout=timeout)
    except (ImportError, RuntimeError):  # the aiohttp extra is not installed
        return None


class InThreads:
    """A synchronous summariser called on the event loop's worker threads."""

    def __init__(self, summariser: Summariser) -> None:
        self.summariser = summariser

    async def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        return await asyncio.to_thread(self.summariser.summarise, changes)

    async def aclose(self) -> None:
        return None


def async_summariser_for(summariser: Summariser) -> AsyncSummariser:
    """The asynchronous counterpart of the process's summariser."""
    if isinstance(summariser, OpenAISummariser):
        return AsyncOpenAISummariser(summariser)
    return InThreads(summariser)
