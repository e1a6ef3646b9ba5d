"""A lean OpenAI-compatible server for the benchmarks, in a process of its own (so it never
shares the harness's GIL): `python -m benchmarks.openai_proc LATENCY` prints its base URL
(ending in /v1) on its first line, then serves until killed.

Hand-written HTTP/1.1 on an asyncio.Protocol rather than a framework (the rule is a
well-kept library unless there is a reason): the server shares the machine's two cores
with the pipeline it measures, and aiohttp's low-level web.Server (a task, a request and a
response object, a parsed header multidict per call; kept as benchmarks/openai_aiohttp.py)
cost 0.13 ms of CPU per call against 0.04 ms here, beside the workers' ~2 ms per
AI-enriched change (`python -m benchmarks.harness_cost --only ai --calls 6000`: 200 ms
latency, 64 calls at a time through Herald's AsyncOpenAISummariser, medians of 3; the
tests' threaded server 0.21 ms). A call waits on a `loop.call_later` timer, not a task
asleep: a task per call cost ~0.012 ms more (0.067 against 0.055, medians of 3, a
busier run).

It answers `POST /v1/chat/completions` (and `/chat/completions`) after LATENCY seconds
with the shape the tests' server (tests/services/openai_server.py) answers and Herald
reads (herald/enrich/ai.py's `summary_of`): id, object, created, model (the request's),
choices[0] (message.content, finish_reason) and usage. Other paths get 404, a body that is
not a JSON object 400. It speaks what the openai client (httpx) and Herald's aiohttp
client send: keep-alive, many requests per connection, pipelined or split anywhere across
packets, answered in order; bodies framed by Content-Length (chunked ones get 411 and the
connection closed; headers over 64 kB get 431, bodies over 16 MB 413, a malformed request
line 400, each closing it once the client has read the answer). It records nothing and
scripts no faults.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import deque
from collections.abc import Callable

REPLY = "Summary: a benchmark item was added."
_REPLY_TOKENS = len(REPLY.split())
MAX_HEAD = 65536
MAX_BODY = 16 * 1024 * 1024
LINGER = 5.0  # seconds a closing connection's unread bytes are drained before it closes
_PATHS = frozenset({b"/v1/chat/completions", b"/chat/completions"})
_ids = itertools.count(1)

#: The answer, with the id, created, model and the prompt's tokens to fill in.
_ANSWER = (
    '{"id": "chatcmpl-bench%d", "object": "chat.completion", "created": %d, "model": %s, '
    '"choices": [{"index": 0, "message": {"role": "assistant", "content": '
    + json.dumps(REPLY)
    + ', "refusal": null}, "logprobs": null, "finish_reason": "stop"}], '
    '"usage": {"prompt_tokens": %d, "completion_tokens": '
    + str(_REPLY_TOKENS)
    + ', "total_tokens": %d}}'
).encode()
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    411: b"Length Required",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
}


def _prompt_tokens(body: dict[str, object]) -> int:
    """A rough, deterministic count: the spaces, where the tests' server counts words."""
    words = 0
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += content.count(" ") + 1
    return words or 1


def completion(raw: bytes) -> tuple[int, bytes]:
    """The status and JSON answer to a Chat Completions request body."""
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return _error(400, "body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "body is not a JSON object")
    model = body.get("model")
    model = model if isinstance(model, str) and model else "bench-model"
    prompt = _prompt_tokens(body)
    total = prompt + _REPLY_TOKENS
    created = int(time.time())
    return 200, _ANSWER % (next(_ids), created, json.dumps(model).encode(), prompt, total)


def _error(status: int, message: str) -> tuple[int, bytes]:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return status, json.dumps({"error": error}).encode()


def response(status: int, body: bytes, close: bool = False) -> bytes:
    """An HTTP/1.1 response; `close` says the connection ends after it."""
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status, _REASONS[status], len(body), b"Connection: close\r\n" if close else b"", body,
    )  # fmt: skip


class Head:
    """What the answer needs of a request's line and headers (`status` set when it is
    refused before its body: the connection then ends)."""

    __slots__ = ("close", "length", "method", "path", "status")

    def __init__(self, head: bytes) -> None:
        self.status, self.close, self.length = 0, False, 0
        line, _, fields = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self.method, self.path, self.status = b"", b"", 400
            return
        self.method, self.path = parts[0], parts[1].split(b"?", 1)[0].rstrip(b"/")
        fields = b"\r\n" + fields.lower()
        self.close = b"\r\nconnection: close" in fields or (
            parts[2] == b"HTTP/1.0" and b"\r\nconnection: keep-alive" not in fields
        )
        if b"\r\ntransfer-encoding:" in fields:
            self.status = 411
            return
        at = fields.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = fields.find(b"\r\n", at + 17)
            value = fields[at + 17 : stop if stop >= 0 else None].strip()
            if not value.isdigit():
                self.status = 400
            elif int(value) > MAX_BODY:
                self.status = 413
            else:
                self.length = int(value)


class Answer:
    """A response in a connection's line, None until its latency has passed."""

    __slots__ = ("close", "response")

    def __init__(self, response: bytes | None, close: bool) -> None:
        self.response, self.close = response, close


class Connection(asyncio.Protocol):
    """One client connection: requests parsed as they arrive, answered in their order,
    each when its latency has passed."""

    def __init__(self, latency: float) -> None:
        self._latency = latency
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: Head | None = None  # the request whose body is awaited
        self._done = False  # the last request has been read: nothing more is parsed
        self._answers: deque[Answer] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._answers.clear()

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        buffer = self._buffer
        buffer += data
        while not self._done:
            head = self._head
            if head is None:
                end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
                if end < 0:
                    if len(buffer) > MAX_HEAD:
                        self._refuse(431)
                    return
                head = Head(bytes(buffer[:end]))
                del buffer[: end + 4]
                if head.status:
                    self._refuse(head.status)
                    return
                self._head = head
            if len(buffer) < head.length:
                return
            body = bytes(buffer[: head.length])
            del buffer[: head.length]
            self._head = None
            self._done = head.close
            self._request(head, body)

    def _request(self, head: Head, body: bytes) -> None:
        if head.method != b"POST" or head.path not in _PATHS:
            path = head.path.decode("latin-1")
            self._queue(response(*_error(404, f"unknown path {path}"), head.close), head.close)
            return
        status, answer = completion(body)
        if status != 200 or not self._latency:
            self._queue(response(status, answer, head.close), head.close)
            return
        slot = Answer(None, head.close)
        self._answers.append(slot)
        self._loop.call_later(self._latency, self._ready, slot, response(200, answer, head.close))

    def _refuse(self, status: int) -> None:
        """Answer `status` after what came before, then close: the rest cannot be framed."""
        self._done = True
        self._buffer.clear()
        self._queue(response(*_error(status, _REASONS[status].decode()), close=True), True)

    def _queue(self, answer: bytes, close: bool) -> None:
        self._answers.append(Answer(answer, close))
        self._flush()

    def _ready(self, slot: Answer, answer: bytes) -> None:
        slot.response = answer
        self._flush()

    def _flush(self) -> None:
        """Write the answers that are ready at the head of the line, in one write."""
        answers, out, close = self._answers, [], False
        while answers and not close and (ready := answers[0].response) is not None:
            out.append(ready)
            close = answers.popleft().close
        if out and self._transport is not None:
            self._transport.write(b"".join(out))
            if close:  # a lingering close: unread bytes left at close() would reset the answer
                self._transport.write_eof()
                self._loop.call_later(LINGER, self._transport.close)


async def serve(latency: float, announce: Callable[[str], object] = print) -> None:
    """Serve on a free loopback port; `announce` is given the base URL once listening."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Connection(latency), "127.0.0.1", 0, backlog=1024, reuse_address=True
    )
    announce(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1")
    async with server:
        await server.serve_forever()


def main() -> None:
    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    asyncio.run(serve(latency, lambda url: print(url, flush=True)))


if __name__ == "__main__":
    main()
