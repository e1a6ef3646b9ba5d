"""`herald jobs ...` and `herald stats`: the operator's view of the job ledger.

Each test gets a fresh database with Herald's schema and writes ledger rows directly,
then calls `monitoring.inspect` or the `herald` command itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest

from herald import ledger
from herald.cli.main import main
from herald.db import connect
from herald.ledger import JobRef
from herald.migrate import upgrade
from monitoring import inspect
from monitoring.stats import stats as ledger_stats

# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with connect(database_url, autocommit=True) as c:
        upgrade(c)
        yield c


@pytest.fixture
def herald(database_url: str, conn, monkeypatch, tmp_path, capsys):
    """Runs `herald ARGS...` against the test database; returns (exit status, out, err)."""
    monkeypatch.chdir(tmp_path)  # no stray .env or herald.toml
    monkeypatch.delenv("HERALD_CONFIG", raising=False)
    monkeypatch.setenv("HERALD_DATABASE_URL", database_url)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def add_notification(
    conn,
    *,
    route: str = "classes",
    change_ids: Sequence[int] = (1,),
    recipients: Sequence[str] = ("ops@example.com",),
) -> int:
    return conn.execute(
        "INSERT INTO herald.notifications (route, table_name, row_pk, change_ids, recipients)"
        " VALUES (%s, 'public.classes', '{\"id\": 7}', %s, %s) RETURNING id",
        (route, list(change_ids), list(recipients)),
    ).fetchone()["id"]


def add_job(
    conn,
    *,
    actor: str = "send_email",
    status: str = "pending",
    notification_id=None,
    recipient: str | None = "ops@example.com",
    attempts: int = 0,
    change_id: int = 1,
    last_error: str | None = None,
    created: str = "0 seconds",
    published: bool = True,
    started: str | None = None,
    finished: str | None = None,
    eta: str | None = None,
    unique_key: str | None = None,
) -> int:
    """A ledger row; times are intervals before now ('5 minutes'), None for NULL."""
    if notification_id is None:
        notification_id = add_notification(conn)
    if unique_key is None:
        unique_key = f"{actor}:{notification_id}" + (f":{recipient}" if recipient else "")
    return conn.execute(
        """
        INSERT INTO herald.jobs (message_id, actor, queue, status, attempts, notification_id,
                                 change_id, recipient, unique_key, priority, created_at,
                                 published_at, started_at, finished_at, eta, last_error)
        VALUES (%(mid)s, %(actor)s, %(queue)s, %(status)s, %(attempts)s, %(nid)s, %(change)s,
                %(recipient)s, %(key)s, 5, now() - %(created)s::interval,
                CASE WHEN %(published)s THEN now() - %(created)s::interval END,
                now() - %(started)s::interval, now() - %(finished)s::interval,
                now() - %(eta)s::interval, %(error)s)
        RETURNING id
        """,
        {
            "mid": uuid.uuid4(),
            "actor": actor,
            "queue": ledger.ACTOR_QUEUES.get(actor, actor),
            "status": status,
            "attempts": attempts,
            "nid": notification_id,
            "change": change_id,
            "recipient": recipient,
            "key": unique_key,
            "created": created,
            "published": published,
            "started": started,
            "finished": finished,
            "eta": eta,
            "error": last_error,
        },
    ).fetchone()["id"]


def job_row(conn, job_id: int) -> dict[str, Any]:
    return conn.execute("SELECT * FROM herald.jobs WHERE id = %s", (job_id,)).fetchone()


class FakePublisher:
    """Stands in for `actors.publish.publish`: records what it is given, takes `accept`."""

    def __init__(self, accept: int | None = None) -> None:
        self.batches: list[list[JobRef]] = []
        self.accept = accept

    def __call__(self, refs: Sequence[JobRef]) -> list[int]:
        self.batches.append(list(refs))
        ids = [r.id for r in refs]
        return ids if self.accept is None else ids[: self.accept]

    @property
    def ids(self) -> list[int]:
        return [r.id for batch in self.batches for r in batch]


# --- jobs list ------------------------------------------------------------------------------


def test_jobs_are_listed_newest_first(conn):
    old = add_job(conn, created="2 hours")
    new = add_job(conn, created="1 minute")
    middle = add_job(conn, created="1 hour")

    assert [j["id"] for j in inspect.list_jobs(conn)] == [new, middle, old]


def test_jobs_list_filters_by_status_and_rejects_unknown_status(conn, herald):
    failed = add_job(conn, status="failed", last_error="SMTPRecipientsRefused: 550")
    add_job(conn, status="complete")

    assert [j["id"] for j in inspect.list_jobs(conn, status="failed")] == [failed]
    with pytest.raises(inspect.UnknownStatus, match="unknown status 'done'.*pending, running"):
        inspect.list_jobs(conn, status="done")

    with pytest.raises(SystemExit) as exit_:
        herald("jobs", "list", "--status", "done")
    assert exit_.value.code == 2


def test_jobs_list_filters_by_actor_and_keeps_to_the_limit(conn):
    enrich = [add_job(conn, actor="enrich", recipient=None) for _ in range(3)]
    add_job(conn, actor="send_email")

    assert {j["id"] for j in inspect.list_jobs(conn, actor="enrich")} == set(enrich)
    assert len(inspect.list_jobs(conn, actor="enrich", limit=2)) == 2


def test_jobs_list_truncates_long_errors_in_the_table_and_keeps_them_whole_in_json(conn, herald):
    error = "TransientError: " + "the SMTP server said no " * 10
    job_id = add_job(conn, status="failed", attempts=9, change_id=42, last_error=error)

    status, out, _ = herald("jobs", "list")
    assert status == 0
    header, _, row = out.splitlines()[:3]
    assert header.split()[:5] == ["id", "actor", "queue", "status", "attempts"]
    assert row.split()[:5] == [str(job_id), "send_email", "email", "failed", "9"]
    assert "42" in row.split() and "ops@example.com" in row
    assert error not in out and "…" in row

    status, out, _ = herald("jobs", "list", "--json", "--status", "failed")
    [listed] = json.loads(out)
    assert listed["last_error"] == error
    assert listed["id"] == job_id and listed["created_at"].startswith("20")


# --- jobs show ------------------------------------------------------------------------------


def test_show_gathers_the_job_its_notification_summary_delivery_and_siblings(conn, herald):
    nid = add_notification(
        conn,
        route="classes",
        change_ids=[11, 12],
        recipients=["ops@example.com", "boss@example.com"],
    )
    enrich = add_job(
        conn, actor="enrich", status="complete", notification_id=nid, recipient=None, change_id=11
    )
    job_id = add_job(
        conn,
        status="failed",
        notification_id=nid,
        attempts=9,
        change_id=11,
        last_error="SMTPServerDisconnected: gone",
    )
    other = add_job(conn, status="complete", notification_id=nid, recipient="boss@example.com")
    add_job(conn, status="complete")  # another notification's job
    conn.execute(
        "INSERT INTO herald.summaries (notification_id, status, summary, model, aliases, error)"
        " VALUES (%s, 'unavailable', NULL, 'gpt-4o-mini', '{\"PERSON_1\": \"Ada\"}', 'timeout')",
        (nid,),
    )
    conn.execute(
        "INSERT INTO herald.deliveries (notification_id, recipient, message_id_header, status,"
        " attempts, ambiguous, error) VALUES (%s, 'ops@example.com', '<n1@herald>', 'failed',"
        " 3, true, 'gone')",
        (nid,),
    )

    info = inspect.show_job(conn, job_id)

    assert info["job"]["id"] == job_id
    assert info["job"]["last_error"] == "SMTPServerDisconnected: gone"
    assert info["notification"]["route"] == "classes"
    assert info["notification"]["change_ids"] == [11, 12]
    assert info["summary"]["status"] == "unavailable" and info["summary"]["error"] == "timeout"
    assert "aliases" not in info["summary"] and "summary" not in info["summary"]
    assert info["delivery"]["status"] == "failed" and info["delivery"]["ambiguous"] is True
    assert info["delivery"]["attempts"] == 3
    assert [s["id"] for s in info["siblings"]] == [enrich, other]

    status, out, _ = herald("jobs", "show", str(job_id))
    assert status == 0
    assert f"job {job_id}: send_email on queue email, failed, 9 attempt(s)" in out
    assert "route 'classes'" in out and "11, 12" in out
    assert "summary: unavailable" in out
    assert "delivery to ops@example.com: failed" in out and "ambiguous" in out
    assert "Ada" not in out

    status, out, _ = herald("jobs", "show", str(job_id), "--json")
    assert json.loads(out)["delivery"]["ambiguous"] is True
    assert "Ada" not in out


def test_show_names_an_unknown_job(conn, herald):
    with pytest.raises(inspect.JobNotFound, match="no job 999"):
        inspect.show_job(conn, 999)

    status, out, err = herald("jobs", "show", "999")
    assert status == 1
    assert err.strip() == "herald jobs show: no job 999 in the ledger"
    assert out == ""


# --- jobs retry -----------------------------------------------------------------------------


def test_retrying_a_failed_job_makes_it_pending_and_publishes_it(conn):
    job_id = add_job(
        conn,
        status="failed",
        attempts=9,
        last_error="boom",
        started="2 minutes",
        finished="1 minute",
    )
    before = job_row(conn, job_id)
    publish = FakePublisher()

    result = inspect.retry_jobs(conn, [job_id], publish=publish)

    assert result.retried == [job_id] and result.published == 1
    [[ref]] = publish.batches
    assert ref == JobRef(
        id=job_id,
        message_id=str(before["message_id"]),
        actor="send_email",
        queue="email",
        priority=5,
    )
    after = job_row(conn, job_id)
    assert after["status"] == "pending"
    assert after["finished_at"] is None
    assert after["published_at"] is not None and after["published_at"] > before["published_at"]
    assert after["attempts"] == 9 and after["last_error"] == "boom"
    # The ledger middleware will run it when the message arrives.
    assert ledger.start_job(conn, job_id)[0] is not None


@pytest.mark.parametrize("status", ["complete", "pending", "running", "superseded"])
def test_a_complete_job_cannot_be_retried(conn, status):
    job_id = add_job(conn, status=status)
    publish = FakePublisher()

    with pytest.raises(inspect.Refused, match=f"job {job_id} (is|was) {status}"):
        inspect.retry_jobs(conn, [job_id], publish=publish)

    assert publish.batches == []
    assert job_row(conn, job_id)["status"] == status


def test_a_canceled_job_can_be_retried(conn):
    job_id = add_job(conn, status="canceled", finished="1 minute")

    inspect.retry_jobs(conn, [job_id], publish=FakePublisher())

    assert job_row(conn, job_id)["status"] == "pending"


def test_retrying_an_unknown_job_changes_nothing(conn):
    failed = add_job(conn, status="failed")
    publish = FakePublisher()

    with pytest.raises(inspect.JobNotFound, match="no job 999"):
        inspect.retry_jobs(conn, [failed, 999], publish=publish)

    assert publish.batches == [] and job_row(conn, failed)["status"] == "failed"


def test_a_failed_job_whose_work_is_already_open_is_not_retried(conn):
    nid = add_notification(conn)
    failed = add_job(conn, status="failed", notification_id=nid)
    pending = add_job(conn, status="pending", notification_id=nid)

    refusal = f"job {pending} for the same work is already pending"
    with pytest.raises(inspect.Refused, match=refusal):
        inspect.retry_jobs(conn, [failed], publish=FakePublisher())

    result = inspect.retry_jobs(conn, failed=True, publish=FakePublisher())
    assert result.retried == [] and [i for i, _ in result.skipped] == [failed]
    assert job_row(conn, failed)["status"] == "failed"


def test_retry_failed_retries_every_failed_job_in_batches(conn):
    failed = [add_job(conn, status="failed", last_error="boom") for _ in range(5)]
    others = {add_job(conn, status=s): s for s in ("complete", "canceled", "running")}
    publish = FakePublisher()

    result = inspect.retry_jobs(conn, failed=True, publish=publish, batch_size=2)

    assert result.retried == failed and result.published == 5 and result.skipped == []
    assert [len(b) for b in publish.batches] == [2, 2, 1]
    assert all(job_row(conn, i)["status"] == "pending" for i in failed)
    assert {i: job_row(conn, i)["status"] for i in others} == others


def test_retry_failed_reopens_only_the_newest_of_two_failed_jobs_for_the_same_work(conn):
    nid = add_notification(conn)
    older = add_job(conn, status="failed", notification_id=nid)
    newer = add_job(conn, status="failed", notification_id=nid)

    result = inspect.retry_jobs(conn, failed=True, publish=FakePublisher())

    assert result.retried == [newer] and [i for i, _ in result.skipped] == [older]


def test_a_job_the_broker_does_not_take_stays_pending_and_unpublished(conn):
    first, second = (add_job(conn, status="failed") for _ in range(2))

    result = inspect.retry_jobs(conn, failed=True, publish=FakePublisher(accept=1))

    assert result.retried == [first, second] and result.published == 1
    assert result.publish_incomplete and result.unpublished == 1
    assert job_row(conn, first)["published_at"] is not None
    # Left for the orchestrator's republisher (the ledger is the outbox).
    unpublished = job_row(conn, second)
    assert unpublished["status"] == "pending" and unpublished["published_at"] is None


def test_a_retry_is_published_after_commit_and_one_the_broker_refused_waits_in_the_outbox(conn):
    job_id = add_job(conn, status="failed")
    seen_by_the_broker = []

    def publish(refs):  # what a worker would read when the message reaches it
        seen_by_the_broker.append(job_row(conn, refs[0].id)["status"])
        return [r.id for r in refs]

    inspect.retry_jobs(conn, [job_id], publish=publish)
    assert seen_by_the_broker == ["pending"]  # committed before it was published

    other = add_job(conn, status="failed")
    result = inspect.retry_jobs(conn, [other], publish=lambda refs: [])  # the broker refused
    assert result.publish_incomplete
    row = job_row(conn, other)
    assert (row["status"], row["published_at"]) == ("pending", None)  # the outbox sends it later


def test_jobs_retry_command_publishes_and_refuses_clearly(conn, herald, monkeypatch):
    from herald.cli import jobs

    publish = FakePublisher()
    monkeypatch.setattr(jobs, "publish", publish)
    failed = [add_job(conn, status="failed") for _ in range(3)]
    complete = add_job(conn, status="complete")

    status, out, err = herald("jobs", "retry", str(failed[0]))
    assert (status, out.strip(), err) == (0, "retried 1 job(s), published 1", "")

    status, out, err = herald("jobs", "retry", "--failed")
    assert (status, out.strip()) == (0, "retried 2 job(s), published 2")
    assert publish.ids == failed

    status, out, err = herald("jobs", "retry", str(complete))
    assert status == 1
    assert err.strip() == (
        f"herald jobs retry: job {complete} is complete: there is nothing to retry"
    )

    status, out, _ = herald("jobs", "retry", "--failed")
    assert (status, out.strip()) == (0, "no failed jobs")


# --- jobs cancel ----------------------------------------------------------------------------


def test_canceling_a_pending_job(conn, herald):
    job_id = add_job(conn, status="pending")

    status, out, _ = herald("jobs", "cancel", str(job_id))

    assert status == 0 and out.strip() == f"canceled job {job_id} (was pending)"
    row = job_row(conn, job_id)
    assert row["status"] == "canceled" and row["finished_at"] is not None
    # Its message does nothing when it arrives.
    assert ledger.start_job(conn, job_id) == (None, "canceled")


def test_canceling_a_running_job_warns_that_the_current_attempt_may_finish(conn, herald):
    job_id = add_job(conn, status="running", attempts=1, started="5 seconds")

    status, out, _ = herald("jobs", "cancel", str(job_id))

    assert status == 0 and "may still finish" in out
    # The attempt in progress finishing does not bring it back, and its retries are skipped.
    ledger.complete(conn, job_id)
    ledger.will_retry(conn, job_id, "boom")
    assert job_row(conn, job_id)["status"] == "canceled"
    assert ledger.start_job(conn, job_id) == (None, "canceled")


@pytest.mark.parametrize("status", ["complete", "failed", "canceled", "superseded"])
def test_a_finished_job_cannot_be_canceled(conn, herald, status):
    job_id = add_job(conn, status=status)

    with pytest.raises(inspect.Refused, match=f"job {job_id}"):
        inspect.cancel_job(conn, job_id)

    code, _, err = herald("jobs", "cancel", str(job_id))
    assert code == 1 and err.startswith(f"herald jobs cancel: job {job_id} ")
    assert job_row(conn, job_id)["status"] == status


def test_canceling_an_unknown_job_names_it(conn, herald):
    code, _, err = herald("jobs", "cancel", "4242")
    assert code == 1 and err.strip() == "herald jobs cancel: no job 4242 in the ledger"


# --- stats ----------------------------------------------------------------------------------


def test_stats_counts_jobs_by_actor_and_status(conn):
    for _ in range(3):
        add_job(
            conn, actor="send_email", status="complete", started="10 seconds", finished="8 seconds"
        )
    add_job(
        conn, actor="send_email", status="complete", started="2 days", finished="2 days"
    )  # outside the 24 h window
    add_job(conn, actor="send_email", status="failed")
    add_job(conn, actor="enrich", status="pending", recipient=None)

    s = ledger_stats(conn)

    email = s["actors"]["send_email"]
    assert email["counts"] == {
        "pending": 0,
        "running": 0,
        "complete": 4,
        "failed": 1,
        "canceled": 0,
        "superseded": 0,
    }
    assert email["total"] == 5
    assert email["success_rate"] == pytest.approx(4 / 5)
    assert email["mean_processing_seconds"] == pytest.approx(2.0)
    assert email["completed_in_window"] == 3
    enrich = s["actors"]["enrich"]
    assert enrich["counts"]["pending"] == 1 and enrich["total"] == 1
    assert enrich["success_rate"] is None and enrich["mean_processing_seconds"] is None


def test_stats_name_every_known_actor_even_with_an_empty_ledger(conn):
    s = ledger_stats(conn)

    assert set(s["actors"]) == set(ledger.ACTOR_QUEUES)
    assert all(a["total"] == 0 for a in s["actors"].values())
    assert s["last_successful_orchestrator_run"] is None


def test_stats_report_overdue_jobs_unclaimed_changes_deliveries_and_the_orchestrator(conn):
    add_job(conn, status="pending", published=False, created="2 minutes")  # never published
    add_job(conn, status="pending", published=False, created="5 seconds")  # within grace
    add_job(conn, status="pending", eta="5 minutes")  # retry long overdue
    add_job(conn, status="pending", eta="10 seconds")  # retry just due
    add_job(conn, status="running", published=False, created="1 hour")  # not pending
    conn.execute(
        "INSERT INTO herald.change_log (table_name, operation, claimed_at)"
        " VALUES ('public.classes', 'INSERT', NULL), ('public.classes', 'INSERT', NULL),"
        " ('public.classes', 'UPDATE', now())"
    )
    nid = add_notification(conn)
    conn.execute(
        "INSERT INTO herald.deliveries (notification_id, recipient, message_id_header, status,"
        " ambiguous) VALUES (%(n)s, 'a@example.com', '<a>', 'sent', false),"
        " (%(n)s, 'b@example.com', '<b>', 'sent', true),"
        " (%(n)s, 'c@example.com', '<c>', 'failed', false)",
        {"n": nid},
    )
    conn.execute(
        "INSERT INTO herald.orchestrator_runs (status, finished_at) VALUES"
        " ('succeeded', now() - interval '1 minute'),"
        " ('succeeded', now() - interval '2 minutes'), ('failed', now())"
    )

    s = ledger_stats(conn)

    assert s["overdue"]["total"] == 2 and s["actors"]["send_email"]["overdue"] == 2
    assert s["overdue"]["oldest_seconds"] >= 120
    assert s["unclaimed_changes"]["count"] == 2
    assert s["deliveries"]["by_status"] == {"sending": 0, "sent": 2, "failed": 1}
    assert s["deliveries"]["ambiguous"] == 1
    age = conn.execute(
        "SELECT extract(epoch FROM now() - %s)::float8 AS age",
        (s["last_successful_orchestrator_run"],),
    ).fetchone()["age"]
    assert 60 <= age < 70  # the latest succeeded run, not the later failed one


def test_stats_command_prints_a_table_or_json(conn, herald):
    add_job(conn, status="complete", started="3 seconds", finished="1 second")
    add_job(conn, status="failed")

    status, out, _ = herald("stats")
    assert status == 0
    header, _, *rows = out.splitlines()
    assert header.split() == [
        "actor",
        "pending",
        "running",
        "complete",
        "failed",
        "canceled",
        "superseded",
        "total",
        "success",
        "mean",
        "time",
        "overdue",
    ]
    email_row = next(r for r in rows if r.startswith("send_email"))
    assert email_row.split()[1:9] == ["0", "0", "1", "1", "0", "0", "2", "50.0%"]
    assert "unclaimed changes: 0" in out
    assert "last successful orchestrator run: never" in out

    status, out, _ = herald("stats", "--json")
    s = json.loads(out)
    assert s["actors"]["send_email"]["success_rate"] == 0.5
    assert s["deliveries"]["ambiguous"] == 0
