"""The benchmarks' former OpenAI-compatible server, on aiohttp's low-level web.Server, kept
for `python -m benchmarks.harness_cost` to measure beside today's hand-written one
(benchmarks/openai_proc.py): `python -m benchmarks.openai_aiohttp LATENCY` prints its base
URL (ending in /v1) on its first line, then serves until killed.

It answers `POST /v1/chat/completions` (and `/chat/completions`) after LATENCY seconds
(`asyncio.sleep`) with id, object, created, model (the request's), choices[0]
(message.content, finish_reason) and usage; other paths get 404, a body that is not a
JSON object 400. Connections are kept alive.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

REPLY = "Summary: a benchmark item was added."
_REPLY_TOKENS = len(REPLY.split())
_ids = itertools.count(1)


def _prompt_tokens(body: dict[str, Any]) -> int:
    """A rough, deterministic count: the spaces, where the tests' server counts words (a
    split of every prompt cost more than the rest of the answer)."""
    words = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += content.count(" ") + 1
    return words or 1


def completion(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions answer to `body`."""
    prompt_tokens = _prompt_tokens(body)
    return {
        "id": f"chatcmpl-bench{next(_ids)}",  # unique; uuid4 cost more than the answer's JSON
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _REPLY_TOKENS,
            "total_tokens": prompt_tokens + _REPLY_TOKENS,
        },
    }


_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


def handler(latency: float) -> Callable[[web.BaseRequest], Awaitable[web.Response]]:
    """The one endpoint, for aiohttp's low-level server: its Application (router,
    middlewares) cost a tenth of the CPU per call more, for one route."""

    async def chat_completions(request: web.BaseRequest) -> web.Response:
        if request.method != "POST" or request.path.rstrip("/") not in _PATHS:
            return _error(404, f"unknown path {request.path}")
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return _error(400, "body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "body is not a JSON object")
        if latency:
            await asyncio.sleep(latency)
        return web.Response(body=json.dumps(completion(body)), content_type="application/json")

    return chat_completions


def _error(status: int, message: str) -> web.Response:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return web.json_response({"error": error}, status=status)


async def serve(latency: float, announce: Callable[[str], object] = print) -> None:
    """Serve on a free loopback port; `announce` is given the base URL once listening."""
    runner = web.ServerRunner(web.Server(handler(latency), access_log=None))
    await runner.setup()
    listening = socket.create_server(("127.0.0.1", 0), backlog=1024)
    await web.SockSite(runner, listening, backlog=1024).start()
    announce(f"http://127.0.0.1:{listening.getsockname()[1]}/v1")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    asyncio.run(serve(latency, lambda url: print(url, flush=True)))


if __name__ == "__main__":
    main()
