"""The tests' OpenAI-compatible server in a process of its own (so it never shares the
harness's GIL): `python -m benchmarks.openai_proc LATENCY` prints its base URL, then serves."""

from __future__ import annotations

import sys
import threading

from tests.services.openai_server import FakeOpenAIServer


def main() -> None:
    server = FakeOpenAIServer()
    server.latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    server.reply = lambda request: "Summary: a benchmark item was added."
    server.start()
    print(server.base_url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
