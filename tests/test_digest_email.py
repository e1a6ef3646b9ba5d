"""The digest email: newest first, "and N more", times in the recipient's timezone, row
values escaped, and the triplet overridable in `[mail] templates_dir` like the others."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.digests.email import render_digest
from herald.email.view import ChangeView
from herald.schedules import zone
from herald.templating import TemplateProblem, check_templates_statically

KATHMANDU = zone("Asia/Kathmandu")
START = datetime(2030, 3, 3, 3, 15, tzinfo=UTC)


def changes(n: int) -> list[ChangeView]:
    """`n` class inserts, newest first (as the digest step reads them)."""
    return [
        ChangeView(i, "public.classes", "INSERT", {"id": i}, None,
                   {"id": i, "title": f"Class {i}", "seats": i}, START + timedelta(minutes=i))
        for i in range(n, 0, -1)
    ]  # fmt: skip


def render(items: list[ChangeView], count: int, **kw):
    return render_digest(
        items, count=count, route="class-digest", schedule="daily 09:00", timezone=KATHMANDU,
        timezone_name="Asia/Kathmandu", period_start=START, period_end=START + timedelta(days=1),
        **kw,
    )  # fmt: skip


def test_the_digest_lists_newest_first_then_says_how_many_more():
    email = render(changes(20), 30)
    assert email.subject == "Daily digest: 30 changes to Classes"
    lines = [line for line in email.text.splitlines() if " · change #" in line]
    assert len(lines) == 20 and lines[0].startswith('1. Classes: "Class 20" created')
    assert "… and 10 more changes in this period" in email.text
    assert "and 10 more changes in this period" in email.html
    # In the recipient's timezone: 03:35 UTC is 09:20 in Kathmandu (+05:45).
    assert "3 Mar 2030, 09:20 +0545" in email.text
    assert "3 Mar 2030, 09:00 +0545 to 4 Mar 2030, 09:00 +0545 (Asia/Kathmandu)" in email.text


def test_one_change_and_no_more():
    email = render(changes(1), 1)
    assert email.subject == "Daily digest: 1 change to Classes" and "more changes" not in email.text


def test_row_values_are_escaped_and_the_overview_and_link_shown():
    hostile = ChangeView(1, "public.classes", "INSERT", {"id": 1}, None,
                         {"id": 1, "title": "<script>alert(1)</script>"}, START)  # fmt: skip
    email = render([hostile], 1, overview="Three classes opened.",
                   unsubscribe_url="https://h.example/unsubscribe/abc.def")  # fmt: skip
    assert "<script>" not in email.html and "&lt;script&gt;" in email.html
    assert "Three classes opened." in email.text and "Overview" in email.html
    assert 'href="https://h.example/unsubscribe/abc.def"' in email.html
    assert "Stop these emails: https://h.example/unsubscribe/abc.def" in email.text


def test_the_packaged_digest_triplet_passes_the_static_check():
    check_templates_statically(["digest"])


def test_a_digest_triplet_in_templates_dir_replaces_the_packaged_one(tmp_path):
    (tmp_path / "digest.txt").write_text("{{ count }} things ({{ more }} not listed)\n")
    check_templates_statically([], str(tmp_path))  # digest variables are known for digest.*
    email = render(changes(3), 5, templates_dir=str(tmp_path))
    assert email.text == "5 things (2 not listed)\n"
    assert "Class 3" in email.html  # the packaged HTML still serves
    (tmp_path / "digest.html").write_text("{{ headline }}")  # a notification's variable
    with pytest.raises(TemplateProblem, match="unknown variable"):
        check_templates_statically([], str(tmp_path))
