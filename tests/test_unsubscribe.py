"""One-click unsubscribe (RFC 2369, RFC 8058): every email carries the signed link when
`[api] public_url` is set; GET shows a confirmation page, POST mutes the recipient for the
route; a tampered, foreign or stale link gets a clear 4xx."""

from __future__ import annotations

import email
import email.policy
import time

import pytest
from fastapi.testclient import TestClient

from herald.config import ConfigError
from herald.email.mime import build_message
from herald.email.render import RenderedEmail
from herald.errors import PermanentError
from herald.unsubscribe import VALID_DAYS, BadToken, read_token, token_for, unsubscribe_url
from tests.helpers import ROUTES, make_settings, sql

KEY = "k" * 40
ROUTE_NAMES = ["classes", "new-members"]
LINKED = {"HERALD_SECRET_KEY": KEY}
RAW = {**ROUTES, "api": {"public_url": "https://herald.example.com/"}}


# -- the token --------------------------------------------------------------------------------


def test_a_token_names_the_route_and_the_address_and_no_ledger_id():
    token = token_for(KEY, "classes", "ann@example.org")
    asked = read_token(KEY, token, ROUTE_NAMES)
    assert (asked.route, asked.address) == ("classes", "ann@example.org")
    assert "classes" not in token  # the route is a fingerprint
    assert len(token) < 120


@pytest.mark.parametrize(
    ("token", "status"),
    [
        ("not-a-token", 400),
        ("", 400),
        ("AAAA.BBBB", 400),
        ("ü" * 20 + ".x", 400),
    ],
)
def test_a_malformed_token_is_400(token, status):
    with pytest.raises(BadToken) as refused:
        read_token(KEY, token, ROUTE_NAMES)
    assert refused.value.status == status


def test_a_tampered_or_foreign_token_is_403_and_a_stale_one_410():
    token = token_for(KEY, "classes", "ann@example.org")
    body, sig = token.split(".")
    other = token_for(KEY, "classes", "bob@example.org").split(".")[0]
    cases = {
        f"{other}.{sig}": 403,  # someone else's address under this signature
        f"{body}.{sig[:-2]}AA": 403,
        token_for("x" * 40, "classes", "ann@example.org"): 403,  # another server's key
        token_for(
            KEY, "classes", "ann@example.org", now=time.time() - (VALID_DAYS + 2) * 86400
        ): 410,
        token_for(KEY, "removed-route", "ann@example.org"): 404,
    }
    for bad, status in cases.items():
        with pytest.raises(BadToken) as refused:
            read_token(KEY, bad, ROUTE_NAMES)
        assert refused.value.status == status, bad


def test_the_link_needs_public_url_and_the_key_together(database_url):
    assert unsubscribe_url(make_settings(database_url), "classes", "a@example.org") is None
    settings = make_settings(database_url, RAW, **LINKED)
    url = unsubscribe_url(settings, "classes", "a@example.org")
    assert url is not None and url.startswith("https://herald.example.com/unsubscribe/")
    with pytest.raises(ConfigError, match="HERALD_SECRET_KEY"):
        make_settings(database_url, RAW)
    with pytest.raises(ConfigError, match="shorter than 32"):
        make_settings(database_url, RAW, HERALD_SECRET_KEY="short")
    with pytest.raises(ConfigError, match="public_url"):
        make_settings(database_url, {**ROUTES, "api": {"public_url": "ftp://x?y"}}, **LINKED)


# -- the headers ------------------------------------------------------------------------------


def wire(url: str | None) -> email.message.EmailMessage:
    data = build_message(
        RenderedEmail("s", "t", "<p>h</p>"),
        mail_from="herald@example.com",
        recipient="ops@example.com",
        message_id="<herald.n1.abc@herald.test>",
        change_ids=[1],
        unsubscribe_url=url,
    )
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage) and not parsed.defects
    return parsed


def test_the_headers_follow_herald_s_own_in_order():
    url = "https://herald.example.com/unsubscribe/" + token_for(KEY, "classes", "ops@example.com")
    msg = wire(url)
    assert list(msg.keys()) == [
        "Message-ID", "Date", "From", "To", "Subject", "Auto-Submitted", "X-Herald-Change-Id",
        "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type",
    ]  # fmt: skip
    assert msg["List-Unsubscribe"] == f"<{url}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "List-Unsubscribe" not in wire(None)


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "https://x.example/a b", "https://x.example/>\r\nBcc: v@x.example",
     "https://x.example/" + "a" * 600, "https://x.example/ü"],
)  # fmt: skip
def test_an_unsafe_link_is_refused(url):
    with pytest.raises(PermanentError, match="List-Unsubscribe"):
        wire(url)


@pytest.mark.integration
def test_every_immediate_email_carries_the_link_for_its_route_and_recipient(
    stub_pipeline, herald_db
):
    stub_pipeline.use(settings=make_settings(herald_db, RAW, **LINKED))
    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga')")
    sql(herald_db, "UPDATE classes SET seats = 3")
    stub_pipeline.orchestrate()
    assert len(stub_pipeline.mailer.sent) == 2
    for sent in stub_pipeline.mailer.sent:
        link = sent.message["List-Unsubscribe"].strip("<>")
        asked = read_token(KEY, link.rsplit("/", 1)[1], ROUTE_NAMES)
        assert (asked.route, asked.address) == ("classes", sent.to_addrs[0])
        assert sent.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


# -- the page ---------------------------------------------------------------------------------


@pytest.fixture
def page(herald_db, pool):
    from herald.bootstrap import bootstrap
    from herald.testing import FakeMailer, FakeSummariser
    from herald.web.app import create_app

    app = bootstrap(make_settings(herald_db, RAW, **LINKED, HERALD_API_TOKENS="viewer:" + "v" * 20),
                    pool=pool, mailer=FakeMailer(), summariser=FakeSummariser())  # fmt: skip
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        yield client
    app.close()


@pytest.mark.integration
def test_get_confirms_and_post_mutes_without_any_token(page, herald_db):
    path = "/unsubscribe/" + token_for(KEY, "classes", "ann@example.org")
    shown = page.get(path)
    assert shown.status_code == 200 and "Stop these emails" in shown.text
    assert "ann@example.org" in shown.text and shown.headers["cache-control"] == "no-store"
    assert sql(herald_db, "SELECT count(*) AS n FROM herald.recipient_mutes")[0]["n"] == 0

    done = page.post(path, content=b"List-Unsubscribe=One-Click",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert done.status_code == 200 and "Unsubscribed" in done.text
    mutes = sql(herald_db, "SELECT address, route, source, until FROM herald.recipient_mutes")
    assert mutes == [{"address": "ann@example.org", "route": "classes", "source": "unsubscribe",
                      "until": None}]  # fmt: skip
    assert page.post(path).status_code == 200  # twice is still muted once


@pytest.mark.integration
def test_a_bad_link_gets_a_clear_page_and_mutes_nobody(page, herald_db):
    token = token_for(KEY, "classes", "ann@example.org")
    stale = token_for(KEY, "classes", "ann@example.org", now=time.time() - 400 * 86400)
    for path, status, says in (
        ("/unsubscribe/" + token[:-3] + "AAA", 403, "not valid"),
        ("/unsubscribe/" + stale, 410, "expired"),
        ("/unsubscribe/garbage", 400, "malformed"),
        ("/unsubscribe/" + "A" * 2000, 400, "malformed"),
    ):
        for answer in (page.get(path), page.post(path)):
            assert answer.status_code == status and says in answer.text, path
    assert sql(herald_db, "SELECT count(*) AS n FROM herald.recipient_mutes")[0]["n"] == 0
