"""Rendering notifications: what an email shows, how big it gets, and what reaches a header
(written by `herald.email.mime`, checked here as a receiver parses it)."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from herald.email import render, values
from herald.email.mime import build_message, message_id_for
from herald.email.render import (
    ChangeView,
    FieldChange,
    Presentation,
    RenderedEmail,
    render_notification,
)
from herald.errors import PermanentError

AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
FROM = "Herald <herald@example.com>"
TO = "ops@example.com"
HERALD_HEADERS = [
    "Message-ID", "Date", "From", "To", "Subject", "Auto-Submitted", "X-Herald-Change-Id",
    "MIME-Version", "Content-Type",
]  # fmt: skip

# Everything that could end a header line or smuggle one in, as a row value would carry it.
INJECTIONS = [
    "x\r\nBcc: victim@example.net",
    "x\nBcc: victim@example.net",
    "x\rBcc: victim@example.net",
    "x\0Bcc: victim@example.net",
    "x =?UTF-8?Q?=0A?=Bcc: victim@example.net",
    "x =?UTF-8?Q?=0D=0ABcc:_victim@example.net?=",
    "x\u2028Bcc: victim@example.net",
    "x\u2029Bcc: victim@example.net",
    "x\x85Bcc: victim@example.net",
    "x\x0bBcc:\x0c victim@example.net",
    "trailing newline\n",
]


def update(
    old: dict[str, Any], new: dict[str, Any], *, change_id: int = 1, pk: Any = 7
) -> ChangeView:
    return ChangeView(change_id, "classes", "UPDATE", {"id": pk}, old, new, AT)


def insert(new: dict[str, Any], *, change_id: int = 1, table: str = "classes") -> ChangeView:
    return ChangeView(change_id, table, "INSERT", {"id": new.get("id", 7)}, None, new, AT)


def rendered(*changes: ChangeView, summary: str | None = None, note: str | None = None):
    return render_notification(changes, summary=summary, summary_note=note, route="ops")


def message(email_: RenderedEmail, change_ids: list[int] | None = None) -> bytes:
    return build_message(
        email_,
        mail_from=FROM,
        recipient=TO,
        message_id=message_id_for(42, TO, "herald.example.com"),
        change_ids=change_ids or [1],
    )


def on_the_wire(data: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


# --- what the email shows -------------------------------------------------------------------


def lines(text: str) -> list[str]:
    """The text part's lines with runs of spaces (the alignment) collapsed."""
    return [" ".join(line.split()) for line in text.splitlines()]


def test_an_update_email_lists_the_changed_fields_and_names_the_row() -> None:
    change = update(
        {"id": 7, "title": "Yoga", "teacher": "Ann", "room": "A1", "seats": 10},
        {"id": 7, "title": "Yoga", "teacher": "Ann", "room": "B2", "seats": 12},
    )
    assert change.fields == [FieldChange("room", "A1", "B2"), FieldChange("seats", 10, 12)]
    out = rendered(change)
    assert lines(out.text)[4:7] == ["Title: Yoga (unchanged)", "Room: A1 → B2", "Seats: 10 → 12"]
    assert "Teacher" not in out.text
    assert "B2" in out.html and "Teacher" not in out.html and "(unchanged)" in out.html


def test_an_update_that_turns_1_into_true_is_a_change() -> None:
    change = update({"flag": 1, "n": 1}, {"flag": True, "n": 1})
    assert change.fields == [FieldChange("flag", 1, True)]


def test_an_update_shows_a_field_that_appeared_or_disappeared() -> None:
    change = update({"id": 7, "gone": "x"}, {"id": 7, "new": "y"})
    assert change.fields == [FieldChange("new", None, "y"), FieldChange("gone", "x", None)]
    assert {"New: — → y", "Gone: x → —"} <= set(lines(rendered(change).text))


def test_the_columns_follow_the_tables_order_when_it_is_known() -> None:
    change = ChangeView(
        1, "classes", "INSERT", {"id": 7}, None, {"id": 7, "seats": 3, "title": "Yoga"}, AT,
        columns=("id", "title", "seats"),
    )  # fmt: skip
    assert [f.name for f in change.fields] == ["id", "title", "seats"]


def test_an_insert_email_lists_every_new_field() -> None:
    out = rendered(insert({"id": 7, "title": "Yoga"}))
    assert out.subject == 'Classes: "Yoga" created'
    assert {"ID: 7", "Title: Yoga"} <= set(lines(out.text))


def test_a_delete_email_lists_every_old_field() -> None:
    change = ChangeView(3, "classes", "DELETE", {"id": 7}, {"id": 7, "title": "Yoga"}, None, AT)
    assert change.fields == [FieldChange("id", 7, None), FieldChange("title", "Yoga", None)]
    out = rendered(change)
    assert "Title: Yoga" in lines(out.text)
    assert out.subject == 'Classes: "Yoga" deleted'


def test_the_subject_names_table_row_and_changed_columns_in_words() -> None:
    change = ChangeView(
        1, "public.class_sessions", "UPDATE", {"id": 7},
        {"id": 7, "title": "Welding basics", "seats": 12, "status": "open", "starts_at": "x"},
        {"id": 7, "title": "Welding basics", "seats": 9, "status": "full", "starts_at": "y"},
        AT,
    )  # fmt: skip
    assert rendered(change).subject == (
        'Class sessions: "Welding basics" updated (seats, status, starts at)'
    )


@pytest.mark.parametrize(
    ("row", "label"),
    [
        ({"id": 3, "email": "a@example.com", "name": "Ann"}, '"Ann"'),
        ({"id": 3, "email": "a@example.com"}, '"a@example.com"'),
        ({"id": 3, "subject": "Hello", "label": "L"}, '"L"'),
        ({"id": 3, "name": "", "title": None}, "#3"),
        ({"code": "X1"}, "#7"),
    ],
)
def test_the_row_is_named_by_the_first_label_column_it_holds(row: dict, label: str) -> None:
    assert rendered(insert(row)).subject == f"Classes: {label} created"


def test_a_route_label_field_names_the_row_and_is_shown_even_when_unchanged() -> None:
    change = update(
        {"coach": "Bo", "title": "Yoga", "seats": 1}, {"coach": "Bo", "title": "Yoga", "seats": 2}
    )
    out = render_notification(
        [change], summary=None, summary_note=None, route="ops",
        presentation=Presentation(label_field="coach"),
    )  # fmt: skip
    assert out.subject == 'Classes: "Bo" updated (seats)'
    assert lines(out.text)[4:6] == ["Coach: Bo (unchanged)", "Seats: 1 → 2"]


def test_dates_and_times_read_as_a_person_writes_them() -> None:
    out = rendered(
        insert(
            {"id": 7, "starts": "2026-11-29T11:21:00+00:00", "ends": "2026-11-29T13:21:30.5+02:00",
             "day": "2026-11-29", "local": "2026-11-29 08:05:00", "at": "09:30:00",
             "not_a_date": "2026-13-45"}
        )
    )  # fmt: skip
    assert {
        "Starts: 29 Nov 2026, 11:21 UTC",
        "Ends: 29 Nov 2026, 11:21:30 UTC",
        "Day: 29 Nov 2026",
        "Local: 29 Nov 2026, 08:05",
        "At: 09:30",
        "Not a date: 2026-13-45",
    } <= set(lines(out.text))
    assert lines(out.text)[1] == "Created 6 May 2024, 07:08:09 UTC"


def test_a_grouped_notification_lists_every_change_in_order() -> None:
    changes = [update({"a": i}, {"a": i + 1}, change_id=10 + i) for i in range(3)]
    out = rendered(*changes)
    assert out.subject == "Classes: #7 updated 3 times (a)"
    for part in (out.text, out.html):
        positions = [part.index(f"change #{10 + i}") for i in range(3)]
        assert positions == sorted(positions)
    values = [out.text.index(f"A: {i} → {i + 1}") for i in range(3)]
    assert values == sorted(values)


def test_a_group_that_creates_and_updates_a_row_says_both() -> None:
    created = insert({"id": 7, "title": "Yoga", "seats": 1}, change_id=1)
    changed = update({"id": 7, "title": "Yoga", "seats": 1}, {"id": 7, "title": "Yoga", "seats": 2})
    assert rendered(created, changed).subject == 'Classes: "Yoga" created and updated (2 changes)'


def test_a_group_over_several_rows_leaves_the_key_out_of_the_subject() -> None:
    assert rendered(insert({"id": 1}), insert({"id": 2}, table="rooms")).subject == (
        "Classes, Rooms: 2 changes"
    )
    assert rendered(insert({"id": 1}), insert({"id": 2})).subject == "Classes: 2 rows created"


def test_the_email_has_one_heading() -> None:
    out = rendered(insert({"id": 7, "title": "Yoga"}))
    assert out.html.count("<h1") == 1 and "<h2" not in out.html and "<h3" not in out.html
    assert out.text.count("Yoga") == 2  # the heading and the field, nothing repeated


def test_the_summary_is_shown_in_both_parts() -> None:
    out = rendered(update({"a": 1}, {"a": 2}), summary="Room moved to B2.")
    assert "Room moved to B2." in out.text and "Room moved to B2." in out.html


@pytest.mark.parametrize("note", ["Summary unavailable", "Offline summary — no AI model was used"])
def test_a_summary_note_is_shown(note: str) -> None:
    out = rendered(update({"a": 1}, {"a": 2}), note=note)
    assert note in out.text and note in out.html


def test_non_string_values_are_shown_as_compact_json() -> None:
    out = rendered(
        insert({"id": 7, "n": 1.5, "ok": False, "none": None, "tags": ["a", 1], "m": {"k": "v"},
                "blank": ""})
    )  # fmt: skip
    for line in ["N: 1.5", "Ok: false", "None: —", 'Tags: ["a", 1]', 'M: {"k": "v"}',
                 "Blank: (empty)"]:  # fmt: skip
        assert line in lines(out.text)


def test_a_multi_line_value_stays_inside_its_field() -> None:
    out = rendered(update({"note": "a"}, {"note": "line one\nline two"}))
    assert "  Note: a → line one\n        line two" in out.text


# --- hostile values -------------------------------------------------------------------------


def test_script_tags_in_values_are_escaped_in_the_html_part() -> None:
    out = rendered(update({"t": "<b>old</b>"}, {"t": "<script>alert(1)</script>"}))
    assert "<script>" not in out.html and "<b>old" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert "<script>alert(1)</script>" in out.text  # plain text is not HTML


def test_script_tags_in_the_summary_are_escaped_in_the_html_part() -> None:
    out = rendered(insert({"id": 7}), summary='<script>x()</script><a href="javascript:x()">')
    assert "<script>" not in out.html and "<a href" not in out.html
    assert "&lt;script&gt;" in out.html


def test_a_javascript_url_in_a_value_is_never_a_link() -> None:
    out = rendered(insert({"id": 7, "url": "javascript:alert(1)", "web": "https://x.test"}))
    assert "<a " not in out.html and "href" not in out.html
    assert "javascript:alert(1)" in out.html  # shown as text only


def test_keys_and_table_names_are_escaped_too() -> None:
    change = ChangeView(1, "<t>", "INSERT", {"<k>": "<v>"}, None, {"<f>": 1}, AT)
    out = rendered(change)
    assert "<t>" not in out.html and "<k>" not in out.html and "<f>" not in out.html


def test_a_10_mb_value_renders_a_bounded_email() -> None:
    huge = "x" * 10_000_000
    out = rendered(update({"blob": "small"}, {"blob": huge}), summary="s" * 1_000_000)
    assert "…(truncated, 10000000 chars)" in out.text
    assert len(out.text) < 20_000 and len(out.html) < 25_000
    assert len(message(out)) < 100_000


def test_a_huge_nested_value_is_truncated_as_json() -> None:
    out = rendered(insert({"id": 7, "items": [{"n": i} for i in range(200_000)]}))
    assert "…(truncated," in out.text
    assert len(out.text) < 5_000


def test_a_row_with_thousands_of_columns_renders_a_bounded_email() -> None:
    out = rendered(insert({f"c{i}": "v" * 400 for i in range(5_000)}))
    assert f"and {5_000 - render.MAX_FIELDS} more field(s) not shown" in out.text
    assert len(out.text) < render.MAX_FIELDS * 600


def test_control_characters_in_values_are_shown_as_escapes_in_the_body() -> None:
    out = rendered(insert({"id": 7, "t": "a\0b\x1bc\u202ed"}))
    assert "\0" not in out.text and "\x1b" not in out.text and "\u202e" not in out.text
    assert "a\\x00b\\x1bc\\u202ed" in out.text


def test_text_is_shown_as_it_is_unless_a_character_in_it_must_be_made_visible() -> None:
    # `visible` skips the character-by-character rule for text it would not change
    for code in [*range(0x10000), 0x1F600, 0xE0001, 0x10FFFF]:
        ch = chr(code)
        assert values.visible(f"a{ch}b") == values._visible_each(f"a{ch}b"), hex(code)


def test_a_number_reads_as_json_writes_it() -> None:
    for number in [0, -7, 10**30, True, False, 1.5, float("nan"), float("-inf"), 2**63]:
        assert values.format_value(number) == json.dumps(number)


@pytest.mark.parametrize("value", INJECTIONS)
def test_line_breaks_in_subject_values_become_spaces(value: str) -> None:
    out = rendered(ChangeView(1, "classes", "INSERT", {"id": value}, None, {"title": value}, AT))
    assert out.subject.startswith(('Classes: "x', 'Classes: "trailing newline"'))
    assert out.subject.endswith(" created")
    for ch in "\r\n\0\u2028\u2029\x85\x0b\x0c":
        assert ch not in out.subject
    assert "  " not in out.subject and out.subject == out.subject.strip()


def test_an_encoded_word_in_a_value_is_shown_literally_and_never_decoded() -> None:
    out = rendered(insert({"id": "=?UTF-8?Q?=0A?="}))
    parsed = on_the_wire(message(out))
    subject = str(parsed["Subject"])
    assert "\n" not in subject
    assert subject.replace("\u200b", "") == 'Classes: "=?UTF-8?Q?=0A?=" created'


def test_the_subject_is_one_bounded_line() -> None:
    out = rendered(insert({"id": "k" * 1_000}, table="t" * 1_000))
    assert len(out.subject) <= render.MAX_SUBJECT_CHARS + 5
    assert "\n" not in out.subject


# --- failures that can never succeed --------------------------------------------------------


def test_a_value_that_cannot_be_formatted_is_a_permanent_error_naming_the_field() -> None:
    with pytest.raises(PermanentError, match=r"cannot render notification: .*'when'.*object"):
        rendered(insert({"id": 7, "when": object()}))


def test_a_missing_template_variable_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "broken.subject.txt").write_text("{{ subject }}")
    (tmp_path / "broken.txt").write_text("{{ no_such_thing }}")
    (tmp_path / "broken.html").write_text("")
    with pytest.raises(PermanentError, match="cannot render notification: .*no_such_thing"):
        render_notification(
            [insert({"id": 7})], summary=None, summary_note=None, route="r",
            presentation=Presentation(template="broken", templates_dir=str(tmp_path)),
        )  # fmt: skip


@pytest.mark.parametrize("template", ["no-such-template", "../etc/passwd"])
def test_an_unknown_template_is_a_permanent_error(template: str) -> None:
    with pytest.raises(PermanentError, match="cannot render notification"):
        render_notification(
            [insert({"id": 7})], summary=None, summary_note=None, route="r", template=template
        )


def test_no_changes_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="no changes"):
        rendered()


def test_an_unknown_operation_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="unknown operation 'TRUNCATE'"):
        ChangeView(1, "classes", "TRUNCATE", {}, None, None, AT)


def test_a_change_log_record_becomes_a_change_view() -> None:
    record = {
        "id": 5, "table_name": "classes", "operation": "UPDATE", "row_pk": {"id": 7},
        "old_row": {"a": 1}, "new_row": {"a": 2}, "changed_at": AT,
    }  # fmt: skip
    assert ChangeView.from_record(record) == update({"a": 1}, {"a": 2}, change_id=5)
    with pytest.raises(PermanentError, match="malformed change record"):
        ChangeView.from_record({"id": 5})


# --- Message-ID -----------------------------------------------------------------------------


def test_message_id_is_stable_for_one_notification_and_recipient() -> None:
    first = message_id_for(42, "ops@example.com", "herald.example.com")
    assert first == message_id_for(42, "ops@example.com", "herald.example.com")
    assert first.startswith("<herald.n42.") and first.endswith("@herald.example.com>")
    assert len(first.split(".")[2].split("@")[0]) == 16


def test_message_ids_differ_by_notification_and_by_recipient() -> None:
    ids = {
        message_id_for(1, "a@example.com", "h.test"),
        message_id_for(2, "a@example.com", "h.test"),
        message_id_for(1, "b@example.com", "h.test"),
    }
    assert len(ids) == 3


def test_a_message_id_does_not_reveal_the_recipient() -> None:
    assert "ops" not in message_id_for(1, "ops@example.com", "h.test")


def test_a_message_id_domain_with_a_line_break_is_refused() -> None:
    with pytest.raises(PermanentError, match="Message-ID domain"):
        message_id_for(1, TO, "h.test\r\nBcc: x@y")


# --- the built message ----------------------------------------------------------------------


def test_the_message_carries_herald_headers_and_both_parts() -> None:
    out = rendered(update({"a": 1}, {"a": 2}), summary="Changed.")
    parsed = on_the_wire(message(out, change_ids=[3, 4]))
    assert list(parsed.keys()) == HERALD_HEADERS
    assert parsed["Message-ID"] == message_id_for(42, TO, "herald.example.com")
    assert parsed["X-Herald-Change-Id"] == "3,4"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["From"] == FROM and parsed["To"] == TO
    assert parsed["Subject"] == "Classes: #7 updated (a)"
    assert parsed["Date"].datetime is not None
    assert parsed.get_content_type() == "multipart/alternative"
    plain = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert "A: 1 → 2" in plain.get_content() and "Changed." in html.get_content()


@pytest.mark.parametrize("value", INJECTIONS)
def test_crlf_in_a_value_never_reaches_a_header(value: str) -> None:
    change = ChangeView(1, "classes", "UPDATE", {"id": value}, {"t": value}, {"t": "y"}, AT)
    parsed = on_the_wire(message(rendered(change, summary=value)))
    assert list(parsed.keys()) == HERALD_HEADERS
    subject = str(parsed["Subject"])
    assert not any(ch in subject for ch in "\r\n\0\u2028\u2029\x85")
    assert parsed["To"] == TO and parsed.get_all("Bcc") is None


@pytest.mark.parametrize(
    ("field", "value", "header"),
    [
        ("mail_from", "herald@example.com\r\nBcc: x@example.net", "From"),
        ("mail_from", "Herald\u2028 <herald@example.com>", "From"),
        ("recipient", "ops@example.com\nBcc: x@example.net", "To"),
        ("recipient", "ops@example.com\0", "To"),
        ("recipient", "ops@example.com\x85", "To"),
        ("message_id", "<a@b>\r\nBcc: x@example.net", "Message-ID"),
        ("subject", "hi\rBcc: x@example.net", "Subject"),
        ("subject", "hi\u2029there", "Subject"),
        ("subject", "hi =?UTF-8?Q?=0A?=Bcc: x@example.net", "Subject"),
        ("recipient", "=?UTF-8?Q?=0A?=x <ops@example.com>", "To"),
    ],
)
def test_a_header_value_with_a_line_break_is_refused_naming_the_header(
    field: str, value: str, header: str
) -> None:
    args: dict[str, Any] = {
        "mail_from": FROM, "recipient": TO, "message_id": "<a@b>", "change_ids": [1],
    }  # fmt: skip
    subject = value if field == "subject" else "ok"
    if field != "subject":
        args[field] = value
    with pytest.raises(PermanentError, match=header):
        build_message(RenderedEmail(subject, "t", "<p>h</p>"), **args)


@pytest.mark.parametrize("recipient", ["a@example.com, b@example.com", "not-an-address", ""])
def test_the_recipient_must_be_exactly_one_address(recipient: str) -> None:
    with pytest.raises(PermanentError, match="To header"):
        build_message(
            RenderedEmail("s", "t", "h"),
            mail_from=FROM, recipient=recipient, message_id="<a@b>", change_ids=[1],
        )  # fmt: skip


def test_extra_headers_are_added_but_cannot_replace_herald_headers() -> None:
    base: dict[str, Any] = {
        "mail_from": FROM, "recipient": TO, "message_id": "<a@b>", "change_ids": [1],
    }  # fmt: skip
    msg = build_message(
        RenderedEmail("s", "t", "h"), extra_headers={"X-Herald-Route": "ops"}, **base
    )
    assert on_the_wire(msg)["X-Herald-Route"] == "ops"
    with pytest.raises(PermanentError, match="Bcc"):
        build_message(RenderedEmail("s", "t", "h"), extra_headers={"Bcc": "x@y.z"}, **base)
    with pytest.raises(PermanentError, match="X-Note"):
        build_message(RenderedEmail("s", "t", "h"), extra_headers={"X-Note": "a\nb"}, **base)


def test_change_ids_must_be_integers() -> None:
    with pytest.raises(PermanentError, match="X-Herald-Change-Id"):
        build_message(
            RenderedEmail("s", "t", "h"),
            mail_from=FROM, recipient=TO, message_id="<a@b>", change_ids=["1\r\nBcc: x"],  # type: ignore[list-item]
        )  # fmt: skip
