"""The ceiling: a no-op Dramatiq actor on the same RabbitMQ, run by `dramatiq benchmarks.noop`.

The broker is built as Herald builds its own (publisher confirms, priorities) with
Dramatiq's default middleware. Each process appends its running count to
`BENCH_PROGRESS` every `REPORT_EVERY` messages, which is how the harness times the drain.
"""

from __future__ import annotations

import itertools
import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

REPORT_EVERY = 250

broker = RabbitmqBroker(url=os.environ["BENCH_BROKER_URL"], confirm_delivery=True, max_priority=10)
dramatiq.set_broker(broker)

_counter = itertools.count(1)
_progress = os.environ.get("BENCH_PROGRESS")


@dramatiq.actor(queue_name="noop", max_retries=0)
def noop(i: int) -> None:
    n = next(_counter)
    if _progress and n % REPORT_EVERY == 0:
        fd = os.open(_progress, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{os.getpid()} {n}\n".encode())
        finally:
            os.close(fd)
