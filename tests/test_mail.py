"""Sending mail: the SMTP client against a real aiosmtpd server, and the fakes beside it."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from herald.email.mailer import FileMailer
from herald.email.mime import build_message, message_id_for
from herald.email.render import ChangeView, render_notification
from herald.email.smtp import SmtpMailer, SmtpSettings, mailer_from_url
from herald.errors import PermanentError, TransientError
from herald.testing import FakeMailer
from tests.services import free_port
from tests.services.smtp import SmtpServer

integration = pytest.mark.integration

FROM = "herald@example.com"
TO = "ops@example.com"
HERALD_HEADERS = [
    "Message-ID", "Date", "From", "To", "Subject", "Auto-Submitted", "X-Herald-Change-Id",
    "MIME-Version", "Content-Type",
]  # fmt: skip


def notification(value: Any = "B2", *, notification_id: int = 1, recipient: str = TO):
    change = ChangeView(
        9, "classes", "UPDATE", {"id": value}, {"room": "A1"}, {"room": value},
        datetime(2024, 5, 6, tzinfo=UTC),
    )  # fmt: skip
    rendered = render_notification([change], summary=None, summary_note=None, route="ops")
    return build_message(
        rendered,
        mail_from=f"Herald <{FROM}>",
        recipient=recipient,
        message_id=message_id_for(notification_id, recipient, "herald.test"),
        change_ids=[9],
    )


@pytest.fixture
def mailer(smtp_server: SmtpServer) -> Iterator[SmtpMailer]:
    client = SmtpMailer(SmtpSettings.from_url(smtp_server.url + "?timeout=10"))
    yield client
    client.close()


def count_connections(server: SmtpServer) -> set[tuple[str, int]]:
    """Peers that said EHLO: one per TCP connection (aiosmtpd reads hooks per connection)."""
    peers: set[tuple[str, int]] = set()
    answer_ehlo = server.handle_EHLO

    async def handle_EHLO(srv: Any, session: Any, envelope: Any, hostname: str, responses: Any):
        peers.add(tuple(session.peer))
        return await answer_ehlo(srv, session, envelope, hostname, responses)

    server.handle_EHLO = handle_EHLO  # type: ignore[method-assign,assignment]
    return peers


# --- SMTP against a real server -------------------------------------------------------------


@integration
def test_a_send_is_recorded_with_exact_envelope(
    smtp_server: SmtpServer, mailer: SmtpMailer
) -> None:
    msg = notification()
    mailer.send(msg, from_addr=FROM, to_addrs=[TO])
    (received,) = smtp_server.wait_for(1)
    assert received.mail_from == FROM
    assert received.rcpt_tos == [TO]
    assert received.message_id == message_id_for(1, TO, "herald.test")
    assert received.header("X-Herald-Change-Id") == "9"


@integration
def test_rcpt_to_never_comes_from_the_headers(smtp_server: SmtpServer, mailer: SmtpMailer) -> None:
    msg = b"Cc: cc@example.com\r\n" + notification(recipient="shown@example.com")
    mailer.send(msg, from_addr=FROM, to_addrs=["actual@example.com"])
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["actual@example.com"]


@integration
def test_the_connection_is_reused_across_two_sends(
    smtp_server: SmtpServer, mailer: SmtpMailer
) -> None:
    peers = count_connections(smtp_server)
    mailer.send(notification(notification_id=1), from_addr=FROM, to_addrs=[TO])
    mailer.send(notification(notification_id=2), from_addr=FROM, to_addrs=[TO])
    assert len(smtp_server.wait_for(2)) == 2
    assert len(peers) == 1


@integration
def test_each_thread_uses_its_own_connection(smtp_server: SmtpServer, mailer: SmtpMailer) -> None:
    peers = count_connections(smtp_server)
    errors: list[BaseException] = []

    def send_three(base: int) -> None:
        try:
            for i in range(3):
                mailer.send(notification(notification_id=base + i), from_addr=FROM, to_addrs=[TO])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=send_three, args=(n * 10,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(smtp_server.wait_for(12)) == 12
    assert len(peers) == 4


@integration
def test_a_451_is_a_transient_error_and_the_connection_goes_on(
    smtp_server: SmtpServer, mailer: SmtpMailer
) -> None:
    peers = count_connections(smtp_server)
    smtp_server.fail_next(1, code=451, text="greylisted, try later")
    with pytest.raises(TransientError, match="SMTP 451: greylisted, try later"):
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
    mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
    assert len(smtp_server.wait_for(1)) == 1
    assert len(peers) == 1


@integration
def test_a_550_recipient_is_a_permanent_error_with_the_servers_text(
    smtp_server: SmtpServer, mailer: SmtpMailer
) -> None:
    smtp_server.reject_recipient(TO, code=550, text="5.1.1 mailbox unavailable")
    with pytest.raises(PermanentError, match=r"SMTP 550: 5\.1\.1 mailbox unavailable"):
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
    assert smtp_server.messages == []


@integration
def test_a_452_recipient_is_a_transient_error(smtp_server: SmtpServer, mailer: SmtpMailer) -> None:
    smtp_server.reject_recipient(TO, code=452, text="mailbox full")
    with pytest.raises(TransientError, match="SMTP 452: mailbox full"):
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])


@integration
def test_a_554_after_data_is_a_permanent_error(smtp_server: SmtpServer, mailer: SmtpMailer) -> None:
    smtp_server.fail_next(1, code=554, text="message rejected as spam")
    with pytest.raises(PermanentError, match="SMTP 554: message rejected as spam"):
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])


@integration
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-at-a-time"])
def test_refusals_leave_the_connection_ready_for_the_next_message(
    make_smtp_server: Callable[..., SmtpServer], pipelining: bool
) -> None:
    server = make_smtp_server(pipelining=pipelining)
    peers = count_connections(server)
    mailer = SmtpMailer(SmtpSettings.from_url(server.url + "?timeout=10"))
    try:
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
        assert mailer._local.conn.has_extn("pipelining") is pipelining
        server.reject_recipient("gone@example.com", code=550, text="no such user")
        with pytest.raises(PermanentError, match="SMTP 550: no such user"):
            mailer.send(notification(), from_addr=FROM, to_addrs=["gone@example.com"])
        server.fail_next(1, code=451, text="later")
        with pytest.raises(TransientError, match="SMTP 451: later"):
            mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
        body = notification(notification_id=2)
        mailer.send(body, from_addr=FROM, to_addrs=[TO])
    finally:
        mailer.close()
    first, last = server.wait_for(2)
    assert last.data.replace(b"\r\n", b"\n").rstrip() == body.replace(b"\r\n", b"\n").rstrip()
    assert last.message_id == message_id_for(2, TO, "herald.test")
    assert len(peers) == 1


@integration
def test_a_pipelined_send_with_one_recipient_refused_reports_it(
    smtp_server: SmtpServer, mailer: SmtpMailer
) -> None:
    smtp_server.reject_recipient("gone@example.com", code=550, text="no such user")
    with pytest.raises(PermanentError, match="accepted for 1 other"):
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO, "gone@example.com"])
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == [TO]


@integration
def test_a_server_that_is_down_is_a_transient_error() -> None:
    mailer = SmtpMailer(SmtpSettings("127.0.0.1", free_port(), timeout=5))
    with pytest.raises(TransientError, match="SMTP connection to 127.0.0.1"):
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])


@integration
def test_a_server_that_never_answers_is_a_transient_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        mailer = SmtpMailer(SmtpSettings("127.0.0.1", port, timeout=0.5))
        with pytest.raises(TransientError, match="[Tt]imeout|timed out"):
            mailer.send(notification(), from_addr=FROM, to_addrs=[TO])


@integration
def test_a_connection_dropped_while_idle_is_replaced_once(
    smtp_server: SmtpServer, mailer: SmtpMailer
) -> None:
    peers = count_connections(smtp_server)
    mailer.send(notification(notification_id=1), from_addr=FROM, to_addrs=[TO])
    mailer._local.conn.sock.shutdown(socket.SHUT_RDWR)  # as a server's idle timeout would
    mailer.send(notification(notification_id=2), from_addr=FROM, to_addrs=[TO])
    assert [m.message_id for m in smtp_server.wait_for(2)] == [
        message_id_for(1, TO, "herald.test"),
        message_id_for(2, TO, "herald.test"),
    ]
    assert len(peers) == 2


@integration
def test_auth_with_percent_encoded_credentials(
    make_smtp_server: Callable[..., SmtpServer],
) -> None:
    server = make_smtp_server(username="herald@example.com", password="p@ss:w/rd%20")
    mailer = SmtpMailer(SmtpSettings.from_url(server.url))
    assert mailer.settings.password == "p@ss:w/rd%20"
    try:
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
    finally:
        mailer.close()
    assert server.wait_for(1)[0].rcpt_tos == [TO]


@integration
def test_a_wrong_password_is_permanent_and_never_shown(
    make_smtp_server: Callable[..., SmtpServer],
) -> None:
    server = make_smtp_server(username="herald", password="right")
    settings = SmtpSettings("127.0.0.1", server.port, "herald", "wrong-s3cret", timeout=10)
    with pytest.raises(PermanentError, match="SMTP 535") as failed:
        SmtpMailer(settings).send(notification(), from_addr=FROM, to_addrs=[TO])
    assert "wrong-s3cret" not in str(failed.value)
    assert "wrong-s3cret" not in repr(failed.value.__cause__)


@integration
def test_starttls_then_auth(make_smtp_server: Callable[..., SmtpServer]) -> None:
    server = make_smtp_server(username="herald", password="s3cret", starttls=True)
    assert server.cert_path is not None
    context = ssl.create_default_context(cafile=str(server.cert_path))
    mailer = SmtpMailer(SmtpSettings.from_url(server.url), ssl_context=context)
    try:
        mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
    finally:
        mailer.close()
    assert server.wait_for(1)[0].rcpt_tos == [TO]


@integration
def test_starttls_with_an_untrusted_certificate_fails(
    make_smtp_server: Callable[..., SmtpServer],
) -> None:
    server = make_smtp_server(username="herald", password="s3cret", starttls=True)
    with pytest.raises(TransientError, match="SSL|certificate"):
        SmtpMailer(SmtpSettings.from_url(server.url)).send(
            notification(), from_addr=FROM, to_addrs=[TO]
        )
    assert server.messages == []


@integration
@pytest.mark.parametrize(
    "value",
    [
        "x\r\nBcc: victim@example.net",
        "x\nBcc: victim@example.net",
        "x\rBcc: victim@example.net",
        "x\0Bcc: victim@example.net",
        "x =?UTF-8?Q?=0A?= Bcc: victim@example.net",
        "x\u2028Bcc: victim@example.net",
        "x\x85Bcc: victim@example.net",
        "trailing newline\n",
    ],
)
def test_header_injection_in_subject_values_never_adds_a_header_or_recipient(
    smtp_server: SmtpServer, mailer: SmtpMailer, value: str
) -> None:
    mailer.send(notification(value), from_addr=FROM, to_addrs=[TO])
    (received,) = smtp_server.wait_for(1)
    assert received.rcpt_tos == [TO]
    assert list(received.message.keys()) == HERALD_HEADERS
    assert not any(ch in received.subject for ch in "\r\n\0\u2028\x85")
    assert received.subject.startswith('Classes: "')
    head = received.data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in head


# --- envelope checks (no server needed) ------------------------------------------------------


@pytest.mark.parametrize(
    ("from_addr", "to_addrs"),
    [(FROM, []), (FROM, ["a@example.com\r\nRCPT TO:<x@y>"]), ("a@b\n", [TO]), (FROM, TO)],
)
def test_a_bad_envelope_is_refused_before_connecting(from_addr: str, to_addrs: Any) -> None:
    mailer = SmtpMailer(SmtpSettings("127.0.0.1", free_port()))
    with pytest.raises(PermanentError):
        mailer.send(notification(), from_addr=from_addr, to_addrs=to_addrs)


# --- settings from a URL --------------------------------------------------------------------


def test_an_smtp_url_with_everything() -> None:
    s = SmtpSettings.from_url("smtp://us%40er:p%3Ass@mail.example.com:587?starttls=true&timeout=10")
    assert s == SmtpSettings(
        "mail.example.com", 587, "us@er", "p:ss", tls=False, starttls=True, timeout=10.0
    )


def test_smtp_url_defaults() -> None:
    assert SmtpSettings.from_url("smtp://localhost") == SmtpSettings("localhost", 25)
    s = SmtpSettings.from_url("smtps://mail.example.com")
    assert (s.port, s.tls, s.starttls, s.timeout) == (465, True, False, 30.0)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example.com", "scheme"),
        ("smtp://", "no host"),
        ("smtp://mail.example.com:99999", "port"),
        ("smtp://mail.example.com:abc", "port"),
        ("smtp://mail.example.com?starttls=maybe", "starttls"),
        ("smtp://mail.example.com?timeout=soon", "timeout"),
        ("smtp://mail.example.com?timeout=-1", "timeout"),
        ("smtp://mail.example.com?tls=1", "unknown parameter 'tls'"),
        ("smtps://mail.example.com?starttls=true", "both"),
        ("smtp://mail.example.com/path", "path"),
    ],
)
def test_a_bad_smtp_url_says_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SmtpSettings.from_url(url)


def test_a_bad_smtp_url_error_never_shows_the_password() -> None:
    with pytest.raises(ValueError) as failed:
        SmtpSettings.from_url("smtp://u:hunter2@mail.example.com:notaport")
    assert "hunter2" not in str(failed.value)


def test_settings_repr_never_shows_the_password() -> None:
    s = SmtpSettings.from_url("smtp://u:hunter2@mail.example.com")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert "hunter2" not in repr(SmtpMailer(s))
    assert "password='***'" in repr(s)


# --- the demo's file mailer, the fake, and choosing by URL ----------------------------------


def test_the_file_mailer_writes_numbered_eml_files(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path / "out")
    mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
    mailer.send(notification(), from_addr=FROM, to_addrs=[TO])
    names = [p.name for p in mailer.paths]
    assert names == ["0001-classes-b2-updated-room.eml", "0002-classes-b2-updated-room.eml"]
    assert b"X-Herald-Change-Id: 9" in mailer.paths[0].read_bytes()
    again = FileMailer(tmp_path / "out")
    again.send(notification(), from_addr=FROM, to_addrs=[TO])
    assert again.paths[0].name.startswith("0003-")


def test_the_file_mailer_is_thread_safe(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path)
    msg = notification()
    threads = [
        threading.Thread(target=lambda: mailer.send(msg, from_addr=FROM, to_addrs=[TO]))
        for _ in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(mailer.paths) == len(set(mailer.paths)) == 20
    assert len(list(tmp_path.glob("*.eml"))) == 20


def test_the_fake_mailer_records_sends_and_fails_on_cue() -> None:
    fake = FakeMailer()
    msg = notification()
    fake.fail_next(TransientError("SMTP 451: later"), times=2)
    for _ in range(2):
        with pytest.raises(TransientError):
            fake.send(msg, from_addr=FROM, to_addrs=[TO])
    fake.send(msg, from_addr=FROM, to_addrs=[TO])
    assert fake.attempts == 3
    ((message, from_addr, to_addrs, raw),) = fake.sent
    assert (raw, from_addr, to_addrs) == (msg, FROM, (TO,))
    assert isinstance(message, EmailMessage)
    assert message["Message-ID"] == message_id_for(1, TO, "herald.test")


def test_mailers_are_chosen_by_url(tmp_path: Path) -> None:
    assert isinstance(mailer_from_url("smtp://localhost:2525"), SmtpMailer)
    assert mailer_from_url("smtps://u:p@localhost").settings.tls  # type: ignore[attr-defined]
    file_mailer = mailer_from_url(f"file://{tmp_path}/demo%20out")
    assert isinstance(file_mailer, FileMailer)
    assert file_mailer.directory == tmp_path / "demo out"
    with pytest.raises(ValueError, match="scheme"):
        mailer_from_url("mailto:ops@example.com")
