"""An OpenAI-compatible Chat Completions server on 127.0.0.1, from the standard library.

It speaks just enough of the API (``POST /v1/chat/completions``, non-streaming) for the real
``openai`` client to parse its replies, so Herald's real summariser runs unmodified against
it. It records requests and can be told to fail, slow down or hang.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_SUMMARY = "Summary: a record changed; see the details below."
HANG_SECONDS = 120.0  # longer than any client timeout a test should use


@dataclass
class _Fault:
    status: int = 500
    remaining: int | None = None  # None: until ``until``
    until: float = 0.0
    hang: bool = False


def _count_tokens(text: str) -> int:
    """A rough, deterministic token count (words), enough for usage accounting."""
    return max(1, len(text.split()))


def _prompt_text(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return " ".join(parts)


class _Server(ThreadingHTTPServer):
    #: socketserver's default listen backlog is 5: a burst of new connections (128 enrich
    #: threads starting at once) overflowed it, and the refused ones looked like an AI outage
    #: (errors, then the ai circuit opening). A real API accepts them.
    request_queue_size = 1024
    daemon_threads = True


class FakeOpenAIServer:
    """``base_url`` for ``OpenAI(base_url=...)``; ``requests`` holds every request body."""

    def __init__(self) -> None:
        self.reply: Callable[[dict[str, Any]], str] = lambda request_json: DEFAULT_SUMMARY
        self.latency = 0.0
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._faults: list[_Fault] = []
        self._stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self.port = int(self._httpd.server_address[1])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="fake-openai", daemon=True
        )

    def start(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- what tests read -------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A snapshot of the parsed JSON bodies received, oldest first (failed ones too)."""
        with self._lock:
            return list(self._requests)

    # -- what tests script -----------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status`` and an OpenAI-style error body."""
        with self._lock:
            self._faults.append(_Fault(status=status, remaining=n))

    def fail_for(self, seconds: float, status: int = 503) -> None:
        """Answer every request with ``status`` for the next ``seconds``."""
        with self._lock:
            self._faults.append(_Fault(status=status, until=time.monotonic() + seconds))

    def hang_next(self, n: int = 1) -> None:
        """Accept the next ``n`` requests and never answer (until the server stops)."""
        with self._lock:
            self._faults.append(_Fault(remaining=n, hang=True))

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            now = time.monotonic()
            for fault in list(self._faults):
                if fault.remaining is None:
                    if now < fault.until:
                        return fault
                    self._faults.remove(fault)
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
            return None

    # -- HTTP ------------------------------------------------------------------------------

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text = self.reply(body)
        prompt_tokens = _count_tokens(_prompt_text(body))
        completion_tokens = _count_tokens(text)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or "fake-model",
            "system_fingerprint": "fp_herald_test",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
            # Headers and body go out in two writes; with Nagle on, the body waited for the
            # client's delayed ACK (~40 ms on loopback) on every answer.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet test output

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._send(404, _error(f"unknown path {self.path}", "invalid_request_error"))
                    return
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, _error("body is not JSON", "invalid_request_error"))
                    return
                with owner._lock:
                    owner._requests.append(body)
                fault = owner._take_fault()
                if fault and fault.hang:
                    owner._stopping.wait(HANG_SECONDS)
                    self.close_connection = True
                    return
                if owner.latency:
                    owner._stopping.wait(owner.latency)
                if fault:
                    self._send(
                        fault.status, _error(f"scripted failure {fault.status}", "server_error")
                    )
                    return
                if body.get("stream"):
                    self._send(400, _error("streaming is not supported", "invalid_request_error"))
                    return
                try:
                    reply = owner._completion(body)
                except Exception as exc:  # a broken test reply function: report, don't hang
                    self._send(500, _error(f"reply function failed: {exc!r}", "server_error"))
                    return
                self._send(200, reply)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [
                        {"id": "fake-model", "object": "model", "created": 0, "owned_by": "herald"}
                    ]})  # fmt: skip
                else:
                    self._send(404, _error(f"unknown path {self.path}", "invalid_request_error"))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("x-request-id", f"req_{uuid.uuid4().hex[:16]}")
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def start_openai_server() -> FakeOpenAIServer:
    return FakeOpenAIServer().start()
