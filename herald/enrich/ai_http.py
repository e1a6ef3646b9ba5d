"""Chat Completions over aiohttp for the enrich batch, with the openai client's retry rules.

Why not the `openai` client (the rule is to prefer it): its `AsyncOpenAI.post()` was a
third of the workers' Python time in the AI benchmark (py-spy). Process CPU per call, 1,500
calls at concurrency 64 against the benchmark's model, medians of 3 side by side
(ai_micro2.py, issue 13): `AsyncOpenAI` over httpx 0.98 ms, over its own aiohttp transport
0.53 ms; what its public API offers to skip work saved little (no retries 0.51 ms, a raw
`httpx` response 0.50 ms); this module 0.15 ms, one bare aiohttp POST 0.13 ms. The rest is
the client's layers (request options, URL merging, header building, httpx request and
response objects, response processing), paid on every call. So the batch path posts the
JSON itself and keeps what an operator relies on, copied from openai/_base_client.py
(`_should_retry`, `_calculate_retry_timeout`, `_parse_retry_after_header`):

- `[ai] timeout_seconds` bounds each attempt, from connecting to the last byte;
- `[ai] max_retries` retries connection errors, timeouts, 408, 409, 429 and >= 500, obeying
  `x-should-retry`, waiting `retry-after-ms` or `retry-after` (seconds or an HTTP date) when
  the server asks for 0-120 s and not retrying when it asks for more, else 0.5 s doubling to
  at most 8 s, less up to a quarter at random;
- the client's headers (`default_headers`: its user agent, organisation and project, less
  its X-Stainless-* telemetry), the Bearer key and the base URL (`OPENAI_BASE_URL`) come
  from the synchronous client;
- errors are `OpenAISummariser`'s (ai.py), with nothing secret in them.

The synchronous `OpenAISummariser` stays on the openai client.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from herald.enrich.ai import OpenAISummariser, error_detail
from herald.errors import HeraldError
from herald.redact import redacted_url

#: openai/_constants.py: the first backoff, its cap, and the longest wait a server may ask.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0
_INFINITY = ("inf", "+inf", "infinity", "+infinity")


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """The wait the server asks for, in seconds (`retry-after-ms`, then `retry-after` as
    seconds or as an HTTP date); None when it asks for none."""
    if headers is None:
        return None
    for header, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if delay == math.inf and value.strip().lower() not in _INFINITY:
            return MAX_RETRY_AFTER + 1  # an overflowing number: too long, not malformed
        return delay / divisor
    try:
        date = email.utils.parsedate_tz(headers.get("retry-after"))
        if date is None:
            return None
        return float(email.utils.mktime_tz(date) - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """Whether an error answer is worth another attempt."""
    wait = retry_after(headers)
    if wait is not None and math.isfinite(wait) and wait > MAX_RETRY_AFTER:
        return False
    told = headers.get("x-should-retry")
    if told in ("true", "false"):
        return told == "true"
    return status in (408, 409, 429) or status >= 500


def retry_delay(retries_taken: int, headers: Mapping[str, str] | None) -> float:
    """Seconds to wait before retry number `retries_taken` + 1."""
    wait = retry_after(headers)
    if wait is not None and math.isfinite(wait) and 0 < wait <= MAX_RETRY_AFTER:
        return wait
    backoff = min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 1000), MAX_RETRY_DELAY)
    return max(backoff * (1 - 0.25 * random.random()), 0.0)  # noqa: S311 - jitter, not secrets


@dataclass(frozen=True)
class _Failed:
    """An attempt that brought no answer: the error, whether another attempt may help,
    and the error answer's headers (None when no answer came)."""

    error: HeraldError
    retryable: bool = True
    headers: Mapping[str, str] | None = None


class ChatCompletions:
    """POST /chat/completions with `twin`'s client settings; one session, opened on the
    event loop at the first call (aiohttp binds it to the running loop)."""

    def __init__(self, twin: OpenAISummariser) -> None:
        sync = twin._client  # noqa: SLF001 - its twin's settings, read once
        timeout = sync.timeout if isinstance(sync.timeout, int | float) else twin.timeout
        self._twin = twin
        self._url = f"{str(sync.base_url).rstrip('/')}/chat/completions"
        # The client's headers less its X-Stainless-* platform telemetry (language, OS,
        # runtime: eight headers, a quarter of this module's CPU per call), the session's
        # own (a dict per call is merged into a new multidict: 0.9 µs, against 0.1).
        self._headers = {
            k: v
            for k, v in sync.default_headers.items()
            if isinstance(v, str) and not k.lower().startswith("x-stainless-")
        }
        self._headers["Authorization"] = f"Bearer {sync.api_key}"
        self._timeout = aiohttp.ClientTimeout(total=float(timeout))
        self.max_retries = int(sync.max_retries)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:  # never the key, nor a password in the base URL
        return f"ChatCompletions(url={redacted_url(self._url)!r})"

    async def post(self, body: Mapping[str, Any] | bytes) -> bytes:
        """The answer's body for `body` (JSON, or already encoded); a Transient/PermanentError
        once retries are spent."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        retries_taken = 0
        while True:
            outcome = await self._attempt(data, retries_taken)
            if isinstance(outcome, bytes):
                return outcome
            if retries_taken >= self.max_retries or not outcome.retryable:
                raise outcome.error
            await asyncio.sleep(retry_delay(retries_taken, outcome.headers))
            retries_taken += 1

    async def _attempt(self, data: bytes, retries_taken: int) -> bytes | _Failed:
        """One attempt: the answer's body, or why there is none."""
        headers = {"x-stainless-retry-count": str(retries_taken)} if retries_taken else None
        if self._session is None:
            # No connection limit of aiohttp's own: the loop's slots bound the calls.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                headers=self._headers,
                timeout=self._timeout,
            )
        try:
            async with self._session.post(self._url, data=data, headers=headers) as response:
                answer = await response.read()
                status, answer_headers = response.status, response.headers
        except TimeoutError:  # aiohttp's timeouts are asyncio's (TimeoutError) too
            return _Failed(self._twin.timeout_error())
        except aiohttp.ClientError:  # the cause may quote the URL or the headers: not kept
            return _Failed(self._twin.connection_error())
        if status < 300:
            return answer
        error = self._twin.status_error(
            status, _status_detail(status, answer), answer_headers.get("x-request-id")
        )
        return _Failed(error, should_retry(status, answer_headers), answer_headers)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _status_detail(status: int, answer: bytes) -> str:
    """The server's message in an error answer, else the openai client's words for it."""
    text = answer.decode("utf-8", errors="replace").strip()
    try:
        body: Any = json.loads(text)
        fallback = f"Error code: {status} - {body}"
    except ValueError:
        body, fallback = text, text or f"Error code: {status}"
    return error_detail(body, fallback)
