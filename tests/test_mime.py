"""The wire form: what `herald.email.mime` writes is what a receiver parses back."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from herald.email.mime import _check_header_block, build_message
from herald.email.render import RenderedEmail
from herald.errors import PermanentError

FROM = "herald@example.com"
TO = "ops@example.com"


def wire(
    subject: str = "s",
    text: str = "t",
    html: str = "<p>h</p>",
    *,
    mail_from: str = FROM,
    recipient: str = TO,
    change_ids: list[int] | None = None,
) -> bytes:
    return build_message(
        RenderedEmail(subject, text, html),
        mail_from=mail_from,
        recipient=recipient,
        message_id="<herald.n1.abc@herald.test>",
        change_ids=change_ids or [1],
    )


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects, msg.defects
    return msg


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def test_every_line_ends_in_crlf_and_fits_the_line_limit() -> None:
    data = wire("é" * 140, "x" * 5_000 + "\n" + "ü" * 3_000, "<p>" + "y" * 5_000 + "</p>")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in lines(data)) <= 998
    assert data.isascii()


def test_text_and_html_parts_decode_to_exactly_what_was_rendered() -> None:
    text = "Ünïcode ✓\nline with trailing space \n.starts with a dot\nFrom the start\n\ttab"
    html = "<p>ça va — 日本語</p>\n<p>" + "z" * 2_000 + "</p>"
    msg = parsed(wire(text=text, html=html))
    plain, markup = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and markup is not None
    assert plain.get_content().replace("\r\n", "\n") == text + "\n"
    assert markup.get_content().replace("\r\n", "\n") == html + "\n"


def test_a_nul_in_a_body_is_encoded_never_sent_raw() -> None:
    data = wire(text="a\0b")
    assert b"\0" not in data
    plain = parsed(data).get_body(("plain",))
    assert plain is not None and plain.get_content().startswith("a\0b")


def test_plain_short_ascii_parts_are_sent_as_7bit() -> None:
    msg = parsed(wire(text="plain\nascii", html="<p>ok</p>"))
    encodings = [part["Content-Transfer-Encoding"] for part in msg.iter_parts()]
    assert encodings == ["7bit", "7bit"]


def test_a_non_ascii_subject_is_encoded_and_reads_back_the_same() -> None:
    subject = "[Herald] UPDATE on élèves (id=Zoë) — 変更"
    data = wire(subject)
    assert subject.encode() not in data
    assert parsed(data)["Subject"] == subject


def test_a_long_subject_is_folded_and_reads_back_the_same() -> None:
    subject = "[Herald] " + " ".join(f"word{i}" for i in range(40))
    data = wire(subject)
    subject_lines = [line for line in lines(data) if line.startswith((b"Subject", b" "))]
    assert len(subject_lines) > 1 and all(len(line) <= 78 for line in subject_lines)
    assert parsed(data)["Subject"] == subject


def test_a_long_subject_with_runs_of_spaces_folds_without_a_blank_line() -> None:
    subject = "x" * 76 + "   "  # the spaces fall past the end of the first line
    data = wire(subject)
    assert all(line.strip() for line in lines(data.split(b"\r\n\r\n")[0]))
    assert parsed(data)["Subject"].split() == subject.split()


def test_a_display_name_is_quoted_or_encoded_as_needed() -> None:
    msg = parsed(
        wire(mail_from='"Herald, Ops" <herald@example.com>', recipient="Zoë <z@example.com>")
    )
    assert msg["From"].addresses[0].display_name == "Herald, Ops"
    assert msg["From"].addresses[0].addr_spec == FROM
    assert msg["To"].addresses[0].display_name == "Zoë"
    assert msg["To"].addresses[0].addr_spec == "z@example.com"


def test_a_thousand_change_ids_fold_and_read_back_in_order() -> None:
    ids = list(range(1_000_000, 1_001_000))
    data = wire(change_ids=ids)
    value = parsed(data)["X-Herald-Change-Id"]
    assert [int(i) for i in value.split(",")] == ids
    assert max(len(line) for line in lines(data)) <= 78


def test_the_boundary_never_occurs_in_a_part() -> None:
    msg = parsed(wire(text="--herald-" * 50))
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_each_message_gets_a_boundary_of_its_own() -> None:
    def boundary(data: bytes) -> bytes:
        return data.split(b'boundary="', 1)[1].split(b'"', 1)[0]

    assert boundary(wire()) != boundary(wire())


@pytest.mark.parametrize(
    "block",
    [
        b"Subject: a\r\r\nTo: b\r\n",
        b"Subject: a\r\n\nTo: b\r\n",
        b"Subject: a\n\rTo: b\r\n",
        b"Subject: a\rTo: b\r\n",
        b"Subject: a\0\r\nTo: b\r\n",
        b"Subject: a\r\nTo: b\n",
    ],
)
def test_a_header_block_with_a_bare_cr_a_bare_lf_or_a_nul_is_refused(block: bytes) -> None:
    _check_header_block(b"Subject: a\r\nTo: b\r\n", ["Subject", "To"])  # the same, sound
    with pytest.raises(PermanentError, match="bare line break or NUL"):
        _check_header_block(block, ["Subject", "To"])


@pytest.mark.parametrize(
    "subject",
    [
        "x\r\nBcc: victim@example.net",
        "x\nBcc: victim@example.net",
        "x\x85Bcc: victim@example.net",
        "x =?UTF-8?Q?=0D=0ABcc:_victim@example.net?=",
        "é =?UTF-8?Q?=0A?=Bcc: victim@example.net",
    ],
)
def test_a_subject_that_would_break_a_header_is_refused(subject: str) -> None:
    with pytest.raises(PermanentError, match="Subject"):
        wire(subject)


def test_a_subject_with_a_control_character_is_refused() -> None:
    with pytest.raises(PermanentError, match="Subject header"):
        wire("é\x0bBcc: victim@example.net")


def test_only_the_headers_herald_sets_are_written() -> None:
    msg = parsed(wire("é" * 100, recipient="Ünï Cödé <u@example.com>"))
    assert list(msg.keys()) == [
        "Message-ID", "Date", "From", "To", "Subject", "Auto-Submitted", "X-Herald-Change-Id",
        "MIME-Version", "Content-Type",
    ]  # fmt: skip
    assert msg.get_all("Bcc") is None and msg.get_all("Cc") is None
