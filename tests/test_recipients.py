"""Recipients: addresses taken from the changed row, mutes, the directory and its commands.

A route's `recipient_fields` adds the address in those columns of the row (the old row's
for a DELETE). A valid one is a recipient; an empty, invalid or hostile one skips that
recipient with the reason in herald.recipient_skips and a counter, never breaks the batch,
and can never add a header or a second recipient. A muted recipient gets nothing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald.cli.main import main
from herald.recipients import RecipientError, parse_recipient
from tests.helpers import ROUTES, make_settings, sql

pytestmark = pytest.mark.integration

COORDINATED = {
    "name": "coordinated",
    "table": "classes",
    "operations": ["INSERT", "UPDATE", "DELETE"],
    "recipients": ["ops@example.com"],
    "recipient_fields": ["coordinator_email", "backup_email"],
}


@pytest.fixture
def coordinated(stub_pipeline, herald_db):
    sql(herald_db, "ALTER TABLE classes ADD COLUMN coordinator_email text, "
                   "ADD COLUMN backup_email jsonb")  # fmt: skip
    stub_pipeline.use(settings=make_settings(herald_db, {**ROUTES, "routes": [COORDINATED]}))
    return stub_pipeline


def add_class(url: str, title: str, coordinator: Any, backup: Any = None) -> None:
    sql(url, "INSERT INTO classes (title, coordinator_email, backup_email) VALUES (%s, %s, %s)",
        (title, coordinator, json.dumps(backup)))  # fmt: skip


def recipients_of(pipeline, title: str) -> list[str]:
    return sorted(
        m.to_addrs[0] for m in pipeline.mailer.sent if f'"{title}"' in m.message["Subject"]
    )


HOSTILE = [
    "victim@example.org\r\nBcc: everyone@example.net",
    "a@example.org, b@example.net",
    "a@example.org; b@example.net",
    "undisclosed: a@example.org, b@example.net;",
    '"a@example.org" <b@example.net>',
    "Ann <a@example.org>\nX-Injected: yes",
    "a@example.org\x01b@example.net",
    "a@exa mple.org",
    "ann@example.org\u2028Bcc: x@example.net",
    "=?utf-8?q?a=40example.org=0ABcc:_x@example.net?= <a@example.org>",
    "x" * 5000 + "@example.org",
    "ann@ex\u0430mple.org",  # a Cyrillic a
]


def test_a_valid_row_address_is_a_recipient_too(coordinated, herald_db):
    add_class(herald_db, "Yoga", "Coach Ann <Ann.Lee@Studio.example>")
    coordinated.orchestrate()
    assert recipients_of(coordinated, "Yoga") == ["Ann.Lee@Studio.example", "ops@example.com"]
    to = [m.message["To"] for m in coordinated.mailer.sent]
    assert "Coach Ann <Ann.Lee@Studio.example>" in to


def test_the_old_rows_address_is_used_for_a_delete(coordinated, herald_db):
    add_class(herald_db, "Judo", "judo@studio.example")
    coordinated.orchestrate()
    sql(herald_db, "DELETE FROM classes WHERE title = 'Judo'")
    coordinated.orchestrate()
    deleted = [m for m in coordinated.mailer.sent if "deleted" in m.message["Subject"]]
    assert sorted(m.to_addrs[0] for m in deleted) == ["judo@studio.example", "ops@example.com"]


@pytest.mark.parametrize("value", HOSTILE)
def test_a_hostile_row_address_skips_that_recipient_and_says_why(coordinated, herald_db, value):
    add_class(herald_db, "Box", value)
    add_class(herald_db, "Tai chi", "tai@studio.example")  # the batch goes on
    coordinated.orchestrate()

    assert recipients_of(coordinated, "Box") == ["ops@example.com"]
    assert recipients_of(coordinated, "Tai chi") == ["ops@example.com", "tai@studio.example"]
    for sent in coordinated.mailer.sent:
        assert len(sent.to_addrs) == 1
        assert sent.message.get_all("To") and len(sent.message.get_all("To")) == 1
        assert sent.message.get_all("Bcc") is None and sent.message.get_all("Cc") is None
        assert "X-Injected" not in sent.message and "everyone" not in str(sent.message["To"])
    skips = sql(herald_db, "SELECT field, reason, detail, recipient FROM herald.recipient_skips "
                           "WHERE field = 'coordinator_email'")  # fmt: skip
    assert [(s["field"], s["reason"], s["recipient"]) for s in skips] == [
        ("coordinator_email", "invalid_address", None)]  # fmt: skip
    assert "coordinator_email of change" in skips[0]["detail"]
    assert value[:20] not in skips[0]["detail"]  # the value itself is never repeated
    counters = sql(herald_db, "SELECT label, value FROM herald.counters")
    assert {(c["label"], c["value"]) for c in counters} >= {("invalid_address", 1.0)}


def test_a_row_without_an_address_skips_it_and_a_non_text_one_is_invalid(coordinated, herald_db):
    add_class(herald_db, "Empty", None, backup={"email": "x@example.org"})
    coordinated.orchestrate()
    assert recipients_of(coordinated, "Empty") == ["ops@example.com"]
    skips = sql(herald_db, "SELECT field, reason FROM herald.recipient_skips ORDER BY id")
    assert skips == [
        {"field": "coordinator_email", "reason": "no_address"},
        {"field": "backup_email", "reason": "invalid_address"},  # a JSON object
    ]


def test_a_route_with_only_row_addresses_skips_a_change_without_one(stub_pipeline, herald_db):
    sql(
        herald_db,
        "ALTER TABLE classes ADD COLUMN coordinator_email text, ADD COLUMN backup_email jsonb",
    )
    route = {**COORDINATED, "recipients": [], "recipient_fields": ["coordinator_email"]}
    stub_pipeline.use(settings=make_settings(herald_db, {**ROUTES, "routes": [route]}))
    add_class(herald_db, "Nobody", "not an address")
    add_class(herald_db, "Somebody", "some@studio.example")
    stub_pipeline.orchestrate()

    assert [m.to_addrs[0] for m in stub_pipeline.mailer.sent] == ["some@studio.example"]
    changes = sql(herald_db, "SELECT outcome, error FROM herald.change_log ORDER BY id")
    assert changes[0]["outcome"] == "skipped"
    assert changes[0]["error"].startswith("no recipient left: coordinator_email of change")
    assert changes[1] == {"outcome": "routed", "error": None}


def test_a_muted_recipient_gets_nothing_from_that_route(coordinated, herald_db, pool):
    from herald.recipients import mute

    with pool.connection() as conn:
        mute(conn, "ops@example.com", "coordinated")
        mute(conn, "tai@studio.example")  # every route
    add_class(herald_db, "Pilates", "tai@studio.example")
    add_class(herald_db, "Spin", "spin@studio.example")
    coordinated.orchestrate()

    assert recipients_of(coordinated, "Spin") == ["spin@studio.example"]
    assert recipients_of(coordinated, "Pilates") == []
    assert sql(herald_db, "SELECT outcome FROM herald.change_log ORDER BY id") == [
        {"outcome": "skipped"}, {"outcome": "routed"}]  # fmt: skip
    reasons = sql(herald_db, "SELECT recipient, reason FROM herald.recipient_skips "
                             "WHERE reason = 'muted'")  # fmt: skip
    assert {(r["recipient"], r["reason"]) for r in reasons} == {
        ("ops@example.com", "muted"), ("tai@studio.example", "muted")}  # fmt: skip


def test_a_mute_with_an_end_lapses(coordinated, herald_db, pool):
    from datetime import UTC, datetime, timedelta

    from herald.recipients import mute

    with pool.connection() as conn:
        mute(conn, "ops@example.com", until=datetime.now(UTC) - timedelta(seconds=1))
    add_class(herald_db, "Row", None)
    coordinated.orchestrate()
    assert recipients_of(coordinated, "Row") == ["ops@example.com"]


# -- checking addresses -----------------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE + ["", "   ", "ann", "@example.org", "ann@", 42, None])
def test_parse_recipient_refuses_anything_but_one_plain_address(value):
    with pytest.raises(RecipientError):
        parse_recipient(value)


def test_parse_recipient_gives_the_address_as_written_and_its_key():
    assert parse_recipient(" Ann Lee <Ann@Example.ORG> ") == (
        "Ann Lee <Ann@Example.ORG>", "ann@example.org")  # fmt: skip
    assert parse_recipient("ops+herald@mail.example.co.uk")[1] == "ops+herald@mail.example.co.uk"


def test_a_configured_recipient_list_in_one_string_is_refused(herald_db):
    from herald.config import ConfigError

    route = {**COORDINATED, "recipients": ["a@example.org, b@example.org"]}
    with pytest.raises(ConfigError, match="invalid email address"):
        make_settings(herald_db, {**ROUTES, "routes": [route]})


# -- the commands -----------------------------------------------------------------------------


@pytest.fixture
def herald(herald_db, monkeypatch, tmp_path, capsys):
    """`herald ARGS...` against the test database with a digest route configured."""
    config = tmp_path / "herald.toml"
    config.write_text(
        '[[routes]]\nname = "class-digest"\ntable = "classes"\nrecipients = ["ops@example.com"]\n'
        'mode = "digest"\ndigest = "daily 09:00"\ndigest_timezone = "Europe/London"\n'
        '[[routes]]\nname = "members"\ntable = "members"\nrecipients = ["ops@example.com"]\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HERALD_CONFIG", str(config))
    monkeypatch.setenv("HERALD_DATABASE_URL", herald_db)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def test_recipients_set_list_mute_and_unmute(herald):
    assert herald("recipients", "set", "Ann@Example.org", "--name", "Ann Lee", "--timezone",
                  "Asia/Kathmandu")[0] == 0  # fmt: skip
    assert (
        herald("recipients", "mute", "ann@example.org", "--route", "members", "--for", "3d")[0] == 0
    )
    status, out, _ = herald("recipients", "list")
    assert status == 0 and "ann@example.org" in out and "Ann Lee" in out and "members until" in out
    status, out, _ = herald("recipients", "list", "--muted", "--json")
    listed = json.loads(out)
    assert [r["address"] for r in listed] == ["ann@example.org"]
    assert listed[0]["timezone"] == "Asia/Kathmandu" and listed[0]["mutes"][0]["route"] == "members"
    assert herald("recipients", "unmute", "ann@example.org")[0] == 0
    assert json.loads(herald("recipients", "list", "--muted", "--json")[1]) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("recipients", "set", "ann@example.org", "--timezone", "Mars/Olympus"),
            "unknown timezone",
        ),
        (("recipients", "mute", "ann@example.org", "--route", "nope"), "unknown route 'nope'"),
        (("digests", "set", "ann@example.org", "hourly 09:00"), "daily 09:00"),
        (("digests", "set", "ann@example.org", "--route", "members"), "not in digest mode"),
        (("recipients", "unmute", "ann@example.org"), "is not muted"),
        (("digests", "pause", "ann@example.org"), "has no digest schedule"),
    ],
)
def test_a_refusal_is_one_clear_line(herald, args, says):
    status, _, err = herald(*args)
    assert status == 1 and says in err and len(err.strip().splitlines()) == 1


def test_a_bad_address_is_refused_by_the_parser(herald):
    with pytest.raises(SystemExit) as exit_:
        herald("recipients", "set", "a@example.org, b@example.org")
    assert exit_.value.code == 2


def test_digests_set_pause_resume_delete(herald):
    status, out, _ = herald(
        "digests", "set", "ann@example.org", "weekly fri 17:30", "--timezone",
        "America/New_York", "--operations", "insert,update", "--json",
    )  # fmt: skip
    got = json.loads(out)
    assert status == 0 and got["schedule"] == "weekly fri 17:30"
    assert got["operations"] == ["INSERT", "UPDATE"] and got["route"] == "class-digest"
    assert "paused" in herald("digests", "pause", "ann@example.org")[1]
    listed = json.loads(herald("digests", "list", "--json")[1])
    assert listed[0]["paused"] is True
    assert herald("digests", "resume", "ann@example.org")[0] == 0
    status, out, _ = herald("digests", "delete", "ann@example.org")
    assert status == 0 and "back to route class-digest's schedule" in out
    listed = json.loads(herald("digests", "list", "--json")[1])
    assert (listed[0]["schedule"], listed[0]["timezone"]) == ("daily 09:00", "Europe/London")
