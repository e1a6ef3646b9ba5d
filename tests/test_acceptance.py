"""Herald for real: `dramatiq actors` and `herald orchestrate` as subprocesses, on a real
RabbitMQ, PostgreSQL, SMTP server and OpenAI-compatible server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import sql
from tests.services import wait_until
from tests.workers import REPO, Worker, orchestrate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# herald_env is a fixture (tests/fixtures.py); Worker and orchestrate drive the subprocesses.
__all__ = ["Worker", "orchestrate"]


def make_changes(url, members=20, class_updates=10):
    sql(
        url,
        "INSERT INTO members (first_name, last_name, email, phone, note) "
        "SELECT 'Ann' || i, 'Lee' || i, 'ann' || i || '@example.org', "
        "'+44 20 7946 ' || lpad(i::text, 4, '0'), 'reach me at ann' || i || '@home.example' "
        "FROM generate_series(1, %s) AS i",
        (members,),
    )
    sql(
        url,
        "INSERT INTO classes (title, seats) SELECT 'Class ' || i, 10 "
        "FROM generate_series(1, %s) AS i",
        (class_updates,),
    )
    sql(url, "UPDATE classes SET seats = seats + 1")
    sql(url, "DELETE FROM classes WHERE id = 1")  # no DELETE route: nothing sent


def test_changes_become_exactly_one_email_per_recipient(
    herald_env, herald_db, smtp_server, openai_server, tmp_path
):
    make_changes(herald_db)
    worker = Worker(herald_env, tmp_path / "worker.log")
    try:
        orchestrate(herald_env)
        received = smtp_server.wait_for(40, timeout=90)
        time.sleep(1.0)  # anything beyond 40 would be a duplicate: give it a moment to show
        received = smtp_server.messages
    finally:
        worker.stop()

    assert len(received) == 40
    assert len({m.message_id for m in received}) == 40
    per_recipient = Counter(r for m in received for r in m.rcpt_tos)
    assert per_recipient == {"ops@example.com": 20, "a@example.com": 10, "b@example.com": 10}

    member_emails = [m for m in received if m.rcpt_tos == ["ops@example.com"]]
    for m in member_emails:
        body = m.message.get_body(("plain",)).get_content()
        assert "a new member joined the studio" in body
        assert m.message["X-Herald-Change-Id"]

    # No request to the AI carries a pii_fields value, an email address or a phone number.
    assert len(openai_server.requests) == 20
    sent_to_ai = repr(openai_server.requests)
    for i in range(1, 21):
        for value in (
            f"Ann{i}'",
            f"Lee{i}'",
            f"ann{i}@example.org",
            f"ann{i}@home.example",
            f"7946 {i:04d}",
        ):
            assert value not in sent_to_ai

    deliveries = sql(herald_db, "SELECT status, count(*) AS n FROM herald.deliveries GROUP BY 1")
    assert deliveries == [{"status": "sent", "n": 40}]
    assert sql(herald_db, "SELECT DISTINCT status FROM herald.jobs") == [{"status": "complete"}]


def test_killing_the_worker_mid_batch_loses_nothing_and_never_changes_a_message_id(
    herald_env, herald_db, smtp_server, tmp_path
):
    sql(
        herald_db,
        "INSERT INTO classes (title, seats) SELECT 'Class ' || i, 10 "
        "FROM generate_series(1, 150) AS i",
    )
    sql(herald_db, "UPDATE classes SET seats = seats + 1")  # 150 changes x 2 recipients
    expected = 300
    worker = Worker(herald_env, tmp_path / "worker.log", threads=8)
    try:
        orchestrate(herald_env)
        wait_until(lambda: len(smtp_server.messages) >= 60, timeout=60)
        worker.kill()
        killed_at = len(smtp_server.messages)
        worker = Worker(herald_env, tmp_path / "worker.log", threads=8)
        wait_until(
            lambda: (
                sql(herald_db, "SELECT count(*) AS n FROM herald.deliveries WHERE status = 'sent'")[
                    0
                ]["n"]
                == expected
            ),
            timeout=120,
        )
        time.sleep(1.0)
    finally:
        worker.stop()

    received = smtp_server.messages
    by_id = Counter(m.message_id for m in received)
    expected_ids = {
        r["message_id_header"]
        for r in sql(herald_db, "SELECT message_id_header FROM herald.deliveries")
    }
    ambiguous = sql(herald_db, "SELECT count(*) AS n FROM herald.deliveries WHERE ambiguous")[0][
        "n"
    ]
    duplicated = sum(n - 1 for n in by_id.values() if n > 1)
    print(
        f"\nSIGKILL after {killed_at} emails: ok={len(by_id)} lost={expected - len(by_id)} "
        f"duplicated={duplicated} (ambiguous deliveries={ambiguous}) "
        f"unexpected={len(set(by_id) - expected_ids)}"
    )
    assert set(by_id) == expected_ids and len(expected_ids) == expected  # nothing lost
    assert duplicated <= ambiguous  # a duplicate only where the ledger says "ambiguous"


def test_periodiq_schedules_the_orchestrator_and_the_sweeper_from_the_environment(
    herald_env, tmp_path
):
    log = tmp_path / "periodiq.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("periodiq")), "herald.worker:setup"],
            cwd=REPO,
            env=herald_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(lambda: "sweep" in log.read_text(), timeout=30)
            assert proc.poll() is None  # still running: waiting for the next minute
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    listing = log.read_text()
    assert "actors.orchestrate:orchestrate" in listing or "orchestrate" in listing
    assert "* * * * *" in listing
