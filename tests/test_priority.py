"""Priority: under a backlog, urgent notifications go first (RabbitMQ message priority)."""

from __future__ import annotations

import pytest

from tests.helpers import sql
from tests.workers import Worker, orchestrate

pytestmark = pytest.mark.integration

ROUTES = """
[mail]
from = "Herald <herald@example.com>"

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


def test_urgent_notifications_overtake_a_backlog(herald_env, herald_db, smtp_server, tmp_path):
    config = tmp_path / "priority.toml"
    config.write_text(ROUTES)
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
    print(f"\nurgent emails arrived at positions {positions} of {len(order)}")
    assert len(positions) == 5
    assert max(positions) < 10  # ahead of ~95 routine emails published before them
