"""The batch path's AI calls: aiohttp with the openai client's timeout, retries and errors."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import pytest
from aiohttp import web

from herald.enrich.ai import OpenAISummariser, Summary
from herald.enrich.ai_async import AsyncOpenAISummariser, async_summariser_for
from herald.enrich.ai_http import (
    MAX_RETRY_DELAY,
    ChatCompletions,
    retry_after,
    retry_delay,
    should_retry,
)
from herald.errors import HeraldError, PermanentError, TransientError
from tests.services.openai_server import DEFAULT_SUMMARY, FakeOpenAIServer

CANARY_KEY = "sk-herald-canary-0123456789abcdef"
SECRET_PROMPT = "canary-prompt-Zq81"
CHANGES = [{"table": "classes", "operation": "INSERT", "new_row": {"title": SECRET_PROMPT}}]

T = TypeVar("T")


def twin(base_url: str, *, max_retries: int = 0, timeout: float = 5) -> OpenAISummariser:
    return OpenAISummariser(
        model="m", api_key=CANARY_KEY, base_url=base_url, timeout=timeout, max_retries=max_retries
    )


def on_a_loop(summariser: OpenAISummariser, use: Callable[[Any], Awaitable[T]]) -> T:
    """`use` the asynchronous twin on an event loop of its own, closing it after."""

    async def main() -> T:
        client = async_summariser_for(summariser)
        try:
            return await use(client)
        finally:
            await client.aclose()

    return asyncio.run(main())


def summarise(summariser: OpenAISummariser) -> Summary:
    return on_a_loop(summariser, lambda client: client.summarise(CHANGES))


def error_of(summariser: OpenAISummariser) -> HeraldError:
    with pytest.raises(HeraldError) as caught:
        summarise(summariser)
    return caught.value


class ScriptedServer:
    """A Chat Completions server that answers each request from a script of (status,
    headers), then with a summary; it records every request's headers."""

    def __init__(self, *script: tuple[int, Mapping[str, str]]) -> None:
        self.script = list(script)
        self.headers: list[Mapping[str, str]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        if self.script:
            status, headers = self.script.pop(0)
            error = {"error": {"message": f"scripted {status}", "type": "server_error"}}
            return web.json_response(error, status=status, headers=dict(headers))
        return web.json_response(
            {"model": "m", "choices": [{"message": {"content": DEFAULT_SUMMARY}}], "usage": {}}
        )


def against_a_script(
    *script: tuple[int, Mapping[str, str]], max_retries: int
) -> tuple[Summary | HeraldError, ScriptedServer]:
    """Summarise against a ScriptedServer: the summary (or the error) and the server."""

    async def main() -> tuple[Summary | HeraldError, ScriptedServer]:
        async with ScriptedServer(*script) as server:
            client = AsyncOpenAISummariser(twin(server.base_url, max_retries=max_retries))
            try:
                return await client.summarise(CHANGES), server
            except HeraldError as exc:
                return exc, server
            finally:
                await client.aclose()

    return asyncio.run(main())


# -- answers ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_summary_comes_back_for_the_same_request_body_as_the_synchronous_client(
    openai_server: FakeOpenAIServer,
) -> None:
    summariser = twin(openai_server.base_url)

    summary = summarise(summariser)

    assert summary.text == DEFAULT_SUMMARY
    assert summary.model == "m"
    assert summary.prompt_tokens > 0
    assert openai_server.requests == [summariser.request_body(CHANGES)]


def test_the_key_goes_as_a_bearer_token_with_the_clients_own_headers() -> None:
    result, server = against_a_script(max_retries=0)

    assert isinstance(result, Summary)
    (headers,) = server.headers
    assert headers["Authorization"] == f"Bearer {CANARY_KEY}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("OpenAI/Python")


@pytest.mark.integration
def test_the_base_url_and_key_come_from_the_clients_environment_variables(
    openai_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)

    summary = summarise(OpenAISummariser(model="m"))

    assert summary.text == DEFAULT_SUMMARY
    assert len(openai_server.requests) == 1


# -- retries ----------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize(("status", "words"), [(429, "rate limited"), (500, "server error")])
def test_a_rate_limit_or_server_error_is_retried_max_retries_times_then_is_transient(
    openai_server: FakeOpenAIServer, status: int, words: str
) -> None:
    openai_server.fail_next(10, status=status)

    error = error_of(twin(openai_server.base_url, max_retries=2))

    assert isinstance(error, TransientError)
    assert words in str(error) and f"HTTP {status}" in str(error)
    assert len(openai_server.requests) == 3


@pytest.mark.integration
def test_a_retry_that_succeeds_brings_the_summary(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(1, status=503)

    summary = summarise(twin(openai_server.base_url, max_retries=1))

    assert summary.text == DEFAULT_SUMMARY
    assert len(openai_server.requests) == 2


@pytest.mark.integration
def test_without_max_retries_a_server_error_is_tried_once(openai_server: FakeOpenAIServer) -> None:
    openai_server.fail_next(1, status=500)

    assert isinstance(error_of(twin(openai_server.base_url)), TransientError)
    assert len(openai_server.requests) == 1  # Dramatiq's Retries own retrying


@pytest.mark.integration
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_rejected_request_or_refused_key_is_permanent_and_not_retried(
    openai_server: FakeOpenAIServer, status: int
) -> None:
    openai_server.fail_next(1, status=status)

    error = error_of(twin(openai_server.base_url, max_retries=2))

    assert isinstance(error, PermanentError)
    assert f"HTTP {status}" in str(error)
    assert len(openai_server.requests) == 1


def test_a_retry_after_the_server_asks_for_is_honoured_and_counted_in_the_headers() -> None:
    result, server = against_a_script((429, {"retry-after-ms": "5"}), max_retries=1)

    assert isinstance(result, Summary)
    assert len(server.headers) == 2
    assert server.headers[1]["x-stainless-retry-count"] == "1"


def test_a_retry_after_longer_than_two_minutes_is_not_waited_for() -> None:
    result, server = against_a_script((429, {"retry-after": "600"}), max_retries=3)

    assert isinstance(result, TransientError)
    assert len(server.headers) == 1


def test_the_servers_x_should_retry_is_obeyed() -> None:
    refused, once = against_a_script((503, {"x-should-retry": "false"}), max_retries=3)
    asked, twice = against_a_script((400, {"x-should-retry": "true"}), max_retries=1)

    assert isinstance(refused, TransientError) and len(once.headers) == 1
    assert isinstance(asked, Summary) and len(twice.headers) == 2


def test_the_wait_before_a_retry_is_the_servers_else_a_jittered_doubling_backoff() -> None:
    in_3s = email.utils.formatdate(time.time() + 3, usegmt=True)

    assert retry_delay(0, {"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_delay(0, {"retry-after": "3"}) == 3.0
    assert 1.0 < retry_delay(0, {"retry-after": in_3s}) <= 3.0
    assert 0.375 <= retry_delay(0, {}) <= 0.5
    assert 0.75 <= retry_delay(1, {"retry-after": "soon"}) <= 1.0
    assert 0.75 * MAX_RETRY_DELAY <= retry_delay(30, None) <= MAX_RETRY_DELAY
    assert retry_delay(0, {"retry-after": "0"}) <= 0.5  # none asked for: the backoff


def test_which_answers_are_worth_another_attempt() -> None:
    assert [s for s in (400, 401, 404, 408, 409, 422, 429, 500, 503) if should_retry(s, {})] == [
        408,
        409,
        429,
        500,
        503,
    ]
    assert not should_retry(429, {"retry-after": "121"})
    assert not should_retry(429, {"retry-after": "1e999"})  # overflows: too long
    assert retry_after({"retry-after": "a date that is not one"}) is None


# -- failures without an answer ---------------------------------------------------------------


@pytest.mark.integration
def test_a_hanging_server_is_a_transient_timeout(openai_server: FakeOpenAIServer) -> None:
    openai_server.hang_next(1)

    error = error_of(twin(openai_server.base_url, timeout=0.5))

    assert isinstance(error, TransientError)
    assert str(error) == "AI timed out after 0.5s"


@pytest.mark.integration
def test_a_hanging_server_is_retried_with_a_timeout_each_time(
    openai_server: FakeOpenAIServer,
) -> None:
    openai_server.hang_next(1)

    summary = summarise(twin(openai_server.base_url, timeout=0.5, max_retries=1))

    assert summary.text == DEFAULT_SUMMARY
    assert len(openai_server.requests) == 2


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    error = error_of(twin(f"http://127.0.0.1:{port}/v1", max_retries=1))

    assert isinstance(error, TransientError)
    assert str(error) == "AI unreachable: Connection error."


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["429", "500", "401", "400", "hang"])
def test_no_error_message_quotes_the_key_or_the_prompt(
    openai_server: FakeOpenAIServer, fault: str
) -> None:
    if fault == "hang":
        openai_server.hang_next(1)
    else:
        openai_server.fail_next(1, status=int(fault))

    error = error_of(twin(openai_server.base_url, timeout=0.5))

    assert CANARY_KEY not in str(error) and CANARY_KEY not in repr(error)
    assert SECRET_PROMPT not in str(error)
    assert error.__cause__ is None and error.__context__ is None


def test_the_summariser_never_shows_its_key() -> None:
    client = AsyncOpenAISummariser(twin("http://127.0.0.1:9/v1"))

    assert CANARY_KEY not in repr(client) and CANARY_KEY not in repr(client._chat)


# -- closing ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_the_client_closes_its_connections_on_aclose(openai_server: FakeOpenAIServer) -> None:
    async def use_then_close(client: AsyncOpenAISummariser) -> bool:
        await client.summarise(CHANGES)
        session = client._chat._session
        await client.aclose()
        return session is not None and session.closed and client._chat._session is None

    assert on_a_loop(twin(openai_server.base_url), use_then_close)


def test_neither_summariser_shows_the_key_or_a_password_of_the_base_url() -> None:
    twin = OpenAISummariser(
        model="m", api_key="sk-do-not-show", base_url="https://user:hunter2@llm.example/v1"
    )
    for shown in (repr(twin), repr(AsyncOpenAISummariser(twin)), repr(ChatCompletions(twin))):
        assert "sk-do-not-show" not in shown and "hunter2" not in shown
        assert "llm.example" in shown or "AsyncOpenAISummariser" in shown
