"""Summaries on an asyncio event loop: many AI calls in flight for one worker thread.

An enrich batch (herald/enrich/batch.py) makes its calls together on the process's event
loop (herald/enrich/loop.py). `AsyncOpenAISummariser` is `OpenAISummariser` on the loop:
the same plain JSON body, posted by `ChatCompletions` (herald/enrich/ai_http.py: aiohttp
with the openai client's timeout, retries and headers, at a quarter of its CPU per call),
the same error mapping (nothing secret in a message) and the same reading and sanitising
of what comes back. Any other summariser (the offline one, the tests' fakes) runs on the
loop's worker threads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from herald.enrich.ai import OpenAISummariser, Summariser, Summary
from herald.enrich.ai_http import ChatCompletions
from herald.enrich.prompts import changes_message


class AsyncSummariser(Protocol):
    async def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        """Summarise changes that are ALREADY aliased; raise Transient/PermanentError."""
        ...

    async def aclose(self) -> None:
        """Release the client's connections (on the loop it ran on)."""
        ...


class AsyncOpenAISummariser:
    """`OpenAISummariser`'s twin on the event loop; see the module doc."""

    def __init__(self, twin: OpenAISummariser) -> None:
        self._twin = twin
        self._chat = ChatCompletions(twin)
        self._body = EncodedBody(twin)

    def __repr__(self) -> str:  # never the key
        return f"AsyncOpenAISummariser(model={self._twin.model!r})"

    async def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        return self._twin.summary_of(await self._chat.post(self._body.of(changes)))

    async def aclose(self) -> None:
        await self._chat.aclose()


class EncodedBody:
    """`twin.request_body(changes)` as the JSON bytes `json.dumps` makes of it, with the
    model, the system prompt and the settings encoded once: only the user message is
    encoded per call."""

    _MARK = "\x00herald-user-message\x00"

    def __init__(self, twin: OpenAISummariser) -> None:
        body = twin.request_body([])
        user = body["messages"][-1]
        assert user["role"] == "user"  # noqa: S101 - the shape request_body builds
        user["content"] = self._MARK
        before, after = json.dumps(body).split(json.dumps(self._MARK))
        self._before, self._after = before.encode(), after.encode()

    def of(self, changes: Sequence[Mapping[str, Any]]) -> bytes:
        user = json.dumps(changes_message(changes)).encode()
        return b"".join((self._before, user, self._after))


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
