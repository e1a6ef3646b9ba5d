"""What a person receives, kept as files: the subject, text and HTML of typical emails.

Each case renders to ``tests/snapshots/<case>.subject.txt``, ``.txt`` and ``.html``; a
change to the templates or the renderer shows up as a diff of those files, and the
HTML ones open in a browser. After an intended change, rewrite them with
``HERALD_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_email_snapshots.py``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from herald.email.render import ChangeView, Presentation, RenderedEmail, render_notification
from herald.headers import FORBIDDEN_IN_HEADERS

SNAPSHOTS = Path(__file__).parent / "snapshots"
TEMPLATES_DIR = str(SNAPSHOTS / "templates")
AT = datetime(2026, 11, 29, 11, 21, tzinfo=UTC)
UPDATE_SNAPSHOTS = os.environ.get("HERALD_UPDATE_SNAPSHOTS") == "1"

CLASS = {
    "id": 7, "title": "Welding basics", "coach_id": 3, "seats": 12, "status": "open",
    "starts_at": "2026-12-01T09:00:00+00:00", "notes": "Bring gloves.\nSafety briefing first.",
}  # fmt: skip
FULL = {**CLASS, "seats": 9, "status": "full"}
MEMBER = {
    "id": 3, "name": "Zoë Ångström-Nakamura", "email": "zoe@example.com",
    "city": "東京", "motto": "مرحبا بالعالم", "joined_on": "2026-11-29", "mood": "🎉",
}  # fmt: skip
HOSTILE = {
    "id": 9,
    "title": "Evil\r\nBcc: victim@example.net",
    "bio": "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "site": "javascript:alert(1)",
    "flip": "abc\u202edcba",
}


def change(
    operation: str, old: dict | None, new: dict | None, *, change_id: int = 12,
    table: str = "public.classes", minutes: int = 0,
) -> ChangeView:  # fmt: skip
    row = new if new is not None else old
    assert row is not None
    return ChangeView(
        change_id, table, operation, {"id": row["id"]}, old, new, AT + timedelta(minutes=minutes)
    )


def email(
    *changes: ChangeView,
    summary: str | None = None,
    note: str | None = None,
    look: Presentation | None = None,
) -> RenderedEmail:
    return render_notification(
        changes, summary=summary, summary_note=note, route="coaches", presentation=look
    )


CASES: dict[str, Any] = {
    "insert": lambda: email(change("INSERT", None, CLASS)),
    "update": lambda: email(
        change("UPDATE", CLASS, FULL),
        summary="Three seats were taken; Welding basics is now full.",
        note="Offline summary: written by Herald without an AI model.",
    ),
    "delete": lambda: email(change("DELETE", FULL, None)),
    "debounced_group": lambda: email(
        change("UPDATE", CLASS, {**CLASS, "seats": 11}, change_id=12),
        change("UPDATE", {**CLASS, "seats": 11}, {**CLASS, "seats": 10}, change_id=13, minutes=4),
        change("UPDATE", {**CLASS, "seats": 10}, FULL, change_id=14, minutes=9),
    ),
    "several_rows": lambda: email(
        change("INSERT", None, MEMBER, table="public.members", change_id=20),
        change("UPDATE", CLASS, FULL, change_id=21, minutes=1),
    ),
    "non_ascii": lambda: email(change("INSERT", None, MEMBER, table="public.members")),
    "hostile": lambda: email(
        change(
            "UPDATE", {**HOSTILE, "site": "https://x.test", "bio": "plain", "flip": "abc"}, HOSTILE
        ),
        summary="<b>bold?</b>\r\nBcc: someone@example.net",
    ),
    "custom_subject": lambda: email(
        change("UPDATE", CLASS, FULL),
        look=Presentation(subject="{{ row.title }} is now {{ row.status }}"),
    ),
    "failing_subject": lambda: email(
        change("DELETE", FULL, None),
        look=Presentation(subject="{{ new.title }} changed"),  # a DELETE has no new row
    ),
    "templates_dir": lambda: email(
        change("UPDATE", CLASS, FULL), look=Presentation(templates_dir=TEMPLATES_DIR)
    ),
    "templates_dir_route_template": lambda: email(
        change("UPDATE", CLASS, FULL),
        look=Presentation(template="brief", templates_dir=TEMPLATES_DIR),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_email_matches_its_snapshot(case: str) -> None:
    out = CASES[case]()
    parts = {".subject.txt": out.subject + "\n", ".txt": out.text, ".html": out.html}
    for suffix, rendered in parts.items():
        path = SNAPSHOTS / f"{case}{suffix}"
        if UPDATE_SNAPSHOTS:
            path.write_text(rendered, encoding="utf-8")
        assert path.exists(), f"{path} is missing: run with HERALD_UPDATE_SNAPSHOTS=1"
        assert rendered == path.read_text(encoding="utf-8"), f"{path.name} differs"


def test_a_hostile_row_reaches_no_header_and_runs_no_script() -> None:
    out = CASES["hostile"]()
    assert not any(ch in out.subject for ch in FORBIDDEN_IN_HEADERS)
    assert out.subject == 'Classes: "Evil Bcc: victim@example.net" updated (bio, site, flip)'
    assert "<script" not in out.html and "<img" not in out.html and "<b>" not in out.html
    assert "href" not in out.html and "\u202e" not in out.html + out.text
    assert "&lt;script&gt;" in out.html and "abc\\u202edcba" in out.text


def test_a_custom_subject_is_used_and_the_body_keeps_its_heading() -> None:
    out = CASES["custom_subject"]()
    assert out.subject == "Welding basics is now full" and out.warnings == ()
    assert out.text.startswith("Classes: Welding basics\n")


def test_a_failing_subject_template_falls_back_and_says_why() -> None:
    out = CASES["failing_subject"]()
    assert out.subject == 'Classes: "Welding basics" deleted'
    (warning,) = out.warnings
    assert warning.startswith("route 'coaches': the subject template failed (UndefinedError")
    assert warning.endswith("the default subject was used")


def test_a_debounced_group_is_summed_up_in_one_subject() -> None:
    out = CASES["debounced_group"]()
    assert out.subject == 'Classes: "Welding basics" updated 3 times (seats, status)'
    assert out.text.splitlines()[1] == "3 changes, 29 Nov 2026, 11:21 to 11:30 UTC"
