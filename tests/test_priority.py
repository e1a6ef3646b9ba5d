"""Priority: under a backlog, urgent notifications go first, on classic queues (RabbitMQ
message priority) and on quorum queues (a queue per priority, consumed most urgent first:
actors/priority_consumer.py)."""

from __future__ import annotations

import pytest

from tests.helpers import sql
from tests.workers import Worker, orchestrate

pytestmark = pytest.mark.integration

ROUTES = """
[mail]
from = "Herald <herald@example.com>"
batch_size = 1  # a message per email: a backlog of 100 messages, not 5 batches

[broker]
queue_type = "{queue_type}"

[[routes]]
name = "urgent-members"
table = "members"
operations = ["INSERT"]
recipients = ["urgent@example.com"]
priority = "urgent"

[[routes]]
name = "routine-classes"
table = "classes"
operations = ["UPDATE"]
recipients = ["routine@example.com"]
priority = "low"
"""


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_urgent_notifications_overtake_a_backlog(
    herald_env, herald_db, smtp_server, tmp_path, queue_type
):
    config = tmp_path / "priority.toml"
    config.write_text(ROUTES.format(queue_type=queue_type))
    env = {**herald_env, "HERALD_CONFIG": str(config), "dramatiq_queue_prefetch": "1"}
    sql(herald_db, "INSERT INTO classes (title) SELECT 'c' || i FROM generate_series(1, 100) i")
    sql(herald_db, "UPDATE classes SET seats = 1")  # 100 low-priority emails, published first
    sql(herald_db, "INSERT INTO members (first_name) SELECT 'm' || i FROM generate_series(1, 5) i")
    orchestrate(env)  # the backlog is in RabbitMQ before any worker runs

    worker = Worker(env, tmp_path / "worker.log", threads=1)
    try:
        received = smtp_server.wait_for(105, timeout=90)
    finally:
        worker.stop()
    order = [m.rcpt_tos[0] for m in received]
    positions = [i for i, r in enumerate(order) if r == "urgent@example.com"]
    print(f"\n{queue_type}: urgent emails arrived at positions {positions} of {len(order)}")
    assert len(positions) == 5
    assert max(positions) < 10  # ahead of ~95 routine emails published before them
