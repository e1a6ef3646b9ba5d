"""Credentials in Herald's URLs are never echoed: by an error Herald raises, by a library's
message passed on, or by a repr."""

from __future__ import annotations

import logging

import pytest

from actors.broker import build_broker
from herald.config import ConfigError, settings_from_mapping
from herald.db import ConnectError, connect
from herald.redact import ScrubbingFilter, scheme_of, scrub, secrets_of, url_secrets

CANARY = "canary-Pw-5e1d"


@pytest.mark.parametrize(
    "url",
    [
        f"herald:{CANARY}@rabbit:5672/herald",  # no scheme: "herald" is the user name
        f"herald:{CANARY}@rabbit://x",
        f"redis://herald:{CANARY}@rabbit:6379/0",
        f"amqp:/herald:{CANARY}@rabbit/herald",
        f"{CANARY}@rabbit",
    ],
)
def test_an_unsupported_broker_url_is_named_by_its_scheme_alone(url):
    settings = settings_from_mapping({}, {"HERALD_BROKER_URL": url})
    with pytest.raises(ConfigError) as refused:
        build_broker(settings, pool=None)  # type: ignore[arg-type]  # refused before use
    message = str(refused.value)
    assert CANARY not in message and "herald:" not in message and "@" not in message
    assert message.startswith("HERALD_BROKER_URL: ")


def test_scheme_of_reads_only_a_well_formed_scheme():
    assert scheme_of("amqps://u:p@h/v") == "amqps"
    assert scheme_of("git+ssh://h/repo") == "git+ssh"
    assert scheme_of(f"herald:{CANARY}@rabbit:5672/herald") is None
    assert scheme_of(f"herald:{CANARY}@rabbit://x") is None
    assert scheme_of("://x") is None


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://herald:{CANARY}@localhost:notaport/herald",  # libpq: bad port
        f"herald:{CANARY}@localhost/herald",  # no scheme: read as key=value, quoted back
        f"postgres//herald:{CANARY}@localhost/herald",
        f"postgresql://herald:{CANARY[:4]}%zz{CANARY[4:]}@localhost/herald",  # bad escape
        f"postgresql://herald:{CANARY[:4]} {CANARY[4:]}@localhost/herald",  # a space
        f"postgresql://herald:{CANARY}@[::1/herald",  # unclosed IPv6 bracket
        f"host=localhost password={CANARY} port=x",
        f"postgresql://herald@127.0.0.1:1/herald?password={CANARY}",  # refused connection
    ],
)
def test_a_refused_database_url_never_quotes_its_password(url):
    with pytest.raises(ConnectError) as refused:
        connect(url, connect_timeout=2)
    message = str(refused.value)
    for piece in (CANARY, CANARY[:4], CANARY[4:]):
        assert piece not in message, message
    assert message.startswith("cannot connect to PostgreSQL: ")
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_the_pool_logs_a_refused_url_without_its_password(caplog):
    from herald.db import make_pool

    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    pool = make_pool(f"herald:{CANARY}@localhost/herald")
    try:
        with pytest.raises(Exception), pool.connection(timeout=1):  # noqa: B017
            pass
    finally:
        pool.close()
    assert "error connecting" in caplog.text and "***" in caplog.text
    assert CANARY not in caplog.text


def test_settings_repr_holds_no_credential():
    settings = settings_from_mapping(
        {},
        {
            "HERALD_DATABASE_URL": f"postgresql://herald:db-{CANARY}@db/herald",
            "HERALD_BROKER_URL": f"amqp://herald:mq-{CANARY}@rabbit/herald",
            "HERALD_SMTP_URL": f"smtp://herald:smtp-{CANARY}@mail:25",
            "OPENAI_API_KEY": f"sk-{CANARY}",
            "OPENAI_BASE_URL": f"https://proxy:ai-{CANARY}@ai.example.com/v1",
        },
    )
    for text in (repr(settings), str(settings)):
        assert CANARY not in text


def test_secrets_are_masked_in_every_form_they_could_be_quoted():
    url = f"amqp://herald:{CANARY}%2Fx@rabbit/herald"
    secrets = url_secrets(url)
    for form in (f"{CANARY}%2Fx", f"{CANARY}/x", f"herald:{CANARY}%2Fx", url):
        assert form in secrets
        assert CANARY not in scrub(f"error near {form!r}", secrets)
    assert url_secrets("postgresql://db:5432/herald") == []  # nothing to hide
    assert scrub("refused by pw", ["pw"]).startswith("(details withheld")
    assert secrets_of(None, "", keys=["sk-x", None]) == ["sk-x"]


def test_the_log_filter_masks_messages_and_tracebacks():
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", (CANARY,), None)
    try:
        raise ValueError(f"bad url herald:{CANARY}@h")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    ScrubbingFilter([CANARY]).filter(record)
    text = logging.Formatter().format(record)
    assert "failed: ***" in text and "ValueError: bad url herald:***@h" in text
    assert CANARY not in text


@pytest.mark.parametrize("url", [f"herald:{CANARY}@mail:25", f"herald:{CANARY}@mail://x"])
def test_a_smtp_url_without_a_scheme_is_refused_without_quoting_its_user_or_password(url):
    from herald.email.smtp import SmtpSettings, mailer_from_url

    for parse in (mailer_from_url, SmtpSettings.from_url):
        with pytest.raises(ValueError) as refused:
            parse(url)
        assert CANARY not in str(refused.value) and "herald" not in str(refused.value)


def test_a_user_name_without_a_password_is_no_secret():
    assert url_secrets("postgresql://u@db:5432/herald") == []
    assert scrub("could not reach db: timeout", secrets_of("postgresql://u@db/herald")) == (
        "could not reach db: timeout"
    )
