"""The alias map stored with a summary is personal data: it is deleted once every delivery
of its notification is final (sent, or failed for good), in the statement that makes the
last one final. Real PostgreSQL, the stub pipeline."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from psycopg.types.json import Jsonb

from herald import db, ledger
from herald.email.deliver import SUMMARY_WITHDRAWN
from herald.errors import PermanentError
from herald.ledger import JobRef
from herald.testing import FakeSummariser
from monitoring import inspect
from tests.helpers import ROUTES, make_settings, sql

pytestmark = pytest.mark.integration

#: The model writes about the member by their aliases; the email puts the real values back.
SUMMARY = "FIRST_NAME_1 (EMAIL_1) joined the studio."
TWO_RECIPIENTS = {
    **ROUTES,
    "routes": [
        {
            "name": "new-members",
            "table": "members",
            "operations": ["INSERT"],
            "recipients": ["ops@example.com", "desk@example.com"],
            "ai": True,
        }
    ],
}


def summary_row(url: str) -> dict:
    [row] = sql(url, "SELECT status, summary, aliases FROM herald.summaries")
    return row


def body(sent) -> str:
    return sent.message.get_body(("plain",)).get_content()


@pytest.fixture
def pipeline(stub_pipeline, herald_db):
    stub_pipeline.use(
        settings=make_settings(herald_db, TWO_RECIPIENTS), summariser=FakeSummariser(SUMMARY)
    )
    return stub_pipeline


def test_the_alias_map_is_deleted_when_every_email_is_sent(pipeline, herald_db):
    sql(herald_db, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org')")
    pipeline.orchestrate()
    assert len(pipeline.mailer.sent) == 2
    for sent in pipeline.mailer.sent:  # the emails had the real values
        assert "Ann (ann@example.org) joined the studio." in body(sent)
    row = summary_row(herald_db)
    assert row["status"] == "ok" and row["summary"] == SUMMARY  # the text stays, aliased
    assert row["aliases"] is None  # jsonb 'null': deleted
    assert "Ann" not in repr(sql(herald_db, "SELECT * FROM herald.summaries"))


def test_the_alias_map_is_deleted_when_the_last_email_fails_for_good(pipeline, herald_db):
    pipeline.mailer.fail_next(PermanentError("SMTP 550: no such user"), times=1)
    sql(herald_db, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org')")
    pipeline.orchestrate()
    statuses = sql(herald_db, "SELECT status FROM herald.jobs WHERE actor = 'send_email'")
    assert sorted(s["status"] for s in statuses) == ["complete", "failed"]
    assert summary_row(herald_db)["aliases"] is None


def test_the_alias_map_stays_while_a_delivery_is_still_open(pipeline, herald_db, pool):
    sql(herald_db, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org')")
    pipeline.orchestrate()
    # Back to the moment before the emails: one job waits for a retry, the other fails.
    aliases = {"FIRST_NAME_1": "Ann", "EMAIL_1": "ann@example.org"}
    sql(herald_db, "UPDATE herald.summaries SET aliases = %s", (Jsonb(aliases),))
    first, second = (
        r["id"] for r in sql(herald_db, "SELECT id FROM herald.jobs WHERE actor = 'send_email'")
    )
    sql(
        herald_db, "UPDATE herald.jobs SET status = 'pending' WHERE id IN (%s, %s)", (first, second)
    )
    with db.autocommit(pool) as conn:
        ledger.fail(conn, first, "SMTP 550")
    assert summary_row(herald_db)["aliases"] == {
        "FIRST_NAME_1": "Ann",
        "EMAIL_1": "ann@example.org",
    }
    with db.autocommit(pool) as conn:
        ledger.fail(conn, second, "SMTP 550")
    assert summary_row(herald_db)["aliases"] is None


def test_an_email_sent_again_after_the_deletion_says_its_summary_was_withdrawn(
    pipeline, herald_db, pool
):
    pipeline.mailer.fail_next(PermanentError("SMTP 550: mailbox full"), times=2)
    sql(herald_db, "INSERT INTO members (first_name, email) VALUES ('Ann', 'ann@example.org')")
    pipeline.orchestrate()
    assert pipeline.mailer.sent == [] and summary_row(herald_db)["aliases"] is None
    refs: list[JobRef] = []  # published once retry_jobs has committed (it publishes before, today)

    def publish_later(batch: Sequence[JobRef]) -> list[int]:
        refs.extend(batch)
        return [j.id for j in batch]

    with db.autocommit(pool) as conn:  # as `herald jobs retry --failed`
        inspect.retry_jobs(conn, failed=True, publish=publish_later)
    pipeline.publish(refs)
    pipeline.drain()
    assert len(pipeline.mailer.sent) == 2
    for sent in pipeline.mailer.sent:
        text = body(sent)
        assert SUMMARY_WITHDRAWN.split(":")[0] in text
        assert "FIRST_NAME_1" not in text and "EMAIL_1" not in text  # no bare aliases


def test_a_summary_without_personal_data_is_not_written_again(pipeline, herald_db):
    sql(herald_db, "INSERT INTO members (note) VALUES ('no one in particular')")
    pipeline.orchestrate()
    assert summary_row(herald_db)["aliases"] == {}  # nothing to delete: no write
