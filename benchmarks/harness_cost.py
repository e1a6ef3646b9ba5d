"""What the benchmark's own servers cost: CPU per email of the SMTP sink, per call of the
OpenAI-compatible server, the former ones beside today's (medians of interleaved runs).

    python -m benchmarks.harness_cost [--emails 5000] [--calls 6000] [--runs 3] [--only ai]

Each server runs in a child process and its CPU (user + system, every thread) is read with
psutil around the load, which this process drives the way Herald does: for the sinks,
~3 kB messages over a few connections through Herald's mailer (PIPELINING, many messages
per connection); for the AI servers, the enrich step's `AsyncOpenAISummariser` (its
aiohttp calls, herald/enrich/ai_http.py) at a fixed concurrency, with the benchmark's
latency.
Only the servers are measured: the clients' CPU is what the pipeline spends in any case.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import SMTP

import psutil

from benchmarks.harness import REPO
from herald.email.smtp import SmtpMailer, SmtpSettings
from herald.enrich.ai import OpenAISummariser
from herald.enrich.ai_async import AsyncOpenAISummariser

SINK_CHILD = """
import sys
from {module} import Sink
sink = Sink().start()
print(sink.url, flush=True)
for _ in sys.stdin:
    print(sink.count, flush=True)
"""

#: The first server: the tests' ThreadingHTTPServer, as benchmarks/openai_proc.py ran it.
THREADED_AI_CHILD = """
import sys, threading
from tests.services.openai_server import FakeOpenAIServer
server = FakeOpenAIServer()
server.latency = float(sys.argv[1])
server.reply = lambda request: "Summary: a benchmark item was added."
server.start()
print(server.base_url, flush=True)
threading.Event().wait()
"""

SINKS = {"aiosmtpd": "benchmarks.sink_aiosmtpd", "asyncio": "benchmarks.sink"}
AI_SERVERS = {
    "threaded": [sys.executable, "-c", THREADED_AI_CHILD],
    "aiohttp": [sys.executable, "-m", "benchmarks.openai_aiohttp"],
    "asyncio": [sys.executable, "-m", "benchmarks.openai_proc"],
}


@contextmanager
def child(command: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A server process and the URL it prints on its first line."""
    proc = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        yield proc, proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait(10)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def email(change_id: int) -> bytes:
    """A message of about Herald's size: plain text and HTML alternatives, ~3 kB."""
    message = EmailMessage(policy=SMTP)
    message["From"], message["To"] = "herald@example.com", "ops@example.com"
    message["Subject"] = f"bench_items: row {change_id} inserted"
    message["X-Herald-Change-Id"] = str(change_id)
    line = f"Change {change_id}: the item's name, price and stock were set.\n"
    message.set_content(line * 19)
    message.add_alternative(f"<html><body>{f'<p>{line}</p>' * 19}</body></html>", "html")
    return message.as_bytes()


def sink_cost(module: str, emails: int, connections: int) -> float:
    """The sink's CPU per message, in ms."""
    with child([sys.executable, "-c", SINK_CHILD.format(module=module)]) as (proc, url):
        mailer = SmtpMailer(SmtpSettings.from_url(url))
        messages = [email(i) for i in range(1, emails + 1)]

        def send(message: bytes) -> None:
            mailer.send(message, from_addr="herald@example.com", to_addrs=["ops@example.com"])

        with ThreadPoolExecutor(connections) as pool:
            list(pool.map(send, messages[:connections]))  # connections open: not measured
            before = cpu_seconds(proc.pid)
            list(pool.map(send, messages))
            spent = cpu_seconds(proc.pid) - before
            pool.submit(mailer.close).result()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("count\n")
        proc.stdin.flush()
        counted = int(proc.stdout.readline())
        if counted != emails + connections:
            raise RuntimeError(f"the {module} sink counted {counted} of {emails + connections}")
    return spent / emails * 1000


async def drive_ai(url: str, calls: int, concurrency: int) -> None:
    """`calls` summaries through Herald's async summariser, `concurrency` at a time."""
    summariser = AsyncOpenAISummariser(
        OpenAISummariser(model="bench-model", api_key="sk-bench", base_url=url)
    )
    changes = [{"table": "bench_items", "op": "INSERT",
                "row": {"id": 1, "name": "widget", "price": "9.99", "stock": 12}}]  # fmt: skip
    left = calls

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await summariser.summarise(changes)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    await summariser.aclose()


def ai_cost(command: list[str], calls: int, concurrency: int, latency: float) -> float:
    """The server's CPU per call, in ms (connections opened by a first round, not measured)."""
    with child([*command, str(latency)]) as (proc, url):

        async def measured() -> float:
            await drive_ai(url, concurrency, concurrency)
            before = cpu_seconds(proc.pid)
            await drive_ai(url, calls, concurrency)
            return cpu_seconds(proc.pid) - before

        spent = asyncio.run(measured())
    return spent / calls * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.harness_cost")
    p.add_argument("--emails", type=int, default=5000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--calls", type=int, default=6000)  # psutil's CPU ticks are 10 ms
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--ai-latency", type=float, default=0.2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", choices=("sink", "ai"), help="measure only these servers")
    args = p.parse_args(argv)

    figures: dict[str, list[float]] = {}
    for run in range(args.runs):
        for name, module in SINKS.items() if args.only != "ai" else ():
            figures.setdefault(f"sink {name}, ms CPU per email", []).append(
                sink_cost(module, args.emails, args.connections)
            )
        for name, command in AI_SERVERS.items() if args.only != "sink" else ():
            figures.setdefault(f"AI server {name}, ms CPU per call", []).append(
                ai_cost(command, args.calls, args.concurrency, args.ai_latency)
            )
        print(f"run {run + 1} of {args.runs} done at {time.strftime('%H:%M:%S')}", flush=True)
    for label, values in figures.items():
        runs = ", ".join(f"{v:.3f}" for v in values)
        print(f"{label:<40} median {statistics.median(values):.3f}  ({runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
