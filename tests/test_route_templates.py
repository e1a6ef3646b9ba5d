"""A route's subject, label_field and template, and `[mail] templates_dir`: what works is
used on every email, what cannot work is refused at start naming the route or the file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from herald.config import ConfigError, Settings, load_settings, settings_from_mapping
from herald.email import render
from herald.email.render import ChangeView, Presentation, check_templates, render_notification
from herald.email.subject import _SANDBOX
from herald.headers import FORBIDDEN_IN_HEADERS
from herald.templating import (
    SUBJECT_FILTERS,
    TEMPLATE_VARIABLES,
    TemplateProblem,
    check_route_templates,
    presentation_for,
)

AT = datetime(2026, 11, 29, 11, 21, tzinfo=UTC)
OLD = {"id": 7, "title": "Welding basics", "seats": 12, "status": "open"}
NEW = {**OLD, "seats": 9, "status": "full"}


def settings(*routes: dict[str, Any], mail: dict[str, Any] | None = None) -> Settings:
    """Settings as a process starts with them: loaded, then their templates checked."""
    raw: dict[str, Any] = {"routes": [{"name": f"r{i}", **r} for i, r in enumerate(routes)]}
    if mail is not None:
        raw["mail"] = mail
    loaded = settings_from_mapping(raw, {})
    check_route_templates(loaded)
    return loaded


def subject(template: str, *changes: ChangeView) -> tuple[str, tuple[str, ...]]:
    out = render_notification(
        changes or [ChangeView(1, "public.classes", "UPDATE", {"id": 7}, OLD, NEW, AT)],
        summary=None, summary_note=None, route="coaches",
        presentation=Presentation(subject=template),
    )  # fmt: skip
    return out.subject, out.warnings


def triplet(folder: Path, name: str, *, text: str = "{{ headline }}", html: str = "<p></p>"):
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.subject.txt").write_text("{{ subject }}")
    (folder / f"{name}.txt").write_text(text)
    (folder / f"{name}.html").write_text(html)


# --- a route's subject ----------------------------------------------------------------------


def test_a_routes_subject_and_label_field_reach_its_presentation() -> None:
    s = settings(
        {"subject": "{{ row.title }} is now {{ row.status }}", "label_field": "title"},
    )
    look = presentation_for(s, "r0")
    assert look.subject == "{{ row.title }} is now {{ row.status }}"
    assert look.label_field == "title" and look.template == "notification"
    assert subject(look.subject) == ("Welding basics is now full", ())


def test_an_unknown_route_gets_the_default_presentation() -> None:
    assert presentation_for(settings(), "gone") == Presentation()


def test_the_subject_sees_change_row_old_new_changed_and_route() -> None:
    template = (
        "{{ change.operation }} {{ change.table }} #{{ change.id }} "
        "{{ change.changed_at | readable }} {{ old.seats }}->{{ new.seats }} "
        "[{{ changed | join(',') }}] {{ route }} {{ table }} {{ label }} {{ count }}"
    )
    assert subject(template) == (
        "UPDATE public.classes #1 29 Nov 2026, 11:21 UTC 12->9 [seats,status] coaches "
        "Classes Welding basics 1",
        (),
    )


def test_a_group_subject_sees_the_row_before_its_first_change_and_after_its_last() -> None:
    middle = {**OLD, "seats": 10}
    changes = [
        ChangeView(1, "classes", "UPDATE", {"id": 7}, OLD, middle, AT),
        ChangeView(2, "classes", "UPDATE", {"id": 7}, middle, NEW, AT),
    ]
    assert subject("{{ old.seats }} → {{ new.seats }} in {{ count }}", *changes)[0] == (
        "12 → 9 in 2"
    )


def test_a_delete_subject_reads_the_old_row_as_row() -> None:
    gone = ChangeView(1, "classes", "DELETE", {"id": 7}, OLD, None, AT)
    assert subject("{{ row.title }} is gone", gone) == ("Welding basics is gone", ())


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ new.title }} changed", "UndefinedError"),  # a DELETE has no new row
        ("{{ row.coach }}", "UndefinedError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ row.__class__.__mro__ }}", "SecurityError"),
        ("{{ row.update({'title': 'x'}) }}", "SecurityError"),
        ("{{ '' }}", "empty subject"),
    ],
)
def test_a_subject_that_fails_on_a_change_falls_back_to_the_default_and_says_why(
    template: str, error: str
) -> None:
    gone = ChangeView(1, "classes", "DELETE", {"id": 7}, dict(OLD), None, AT)
    text, warnings = subject(template, gone)
    assert text == 'Classes: "Welding basics" deleted'
    assert len(warnings) == 1 and error in warnings[0] and "route 'coaches'" in warnings[0]
    assert gone.old_row == OLD  # the sandbox cannot change the row


def test_a_custom_subject_never_carries_a_line_break() -> None:
    hostile = {**NEW, "title": "x\r\nBcc: victim@example.net\u2028y"}
    update = ChangeView(1, "classes", "UPDATE", {"id": 7}, OLD, hostile, AT)
    text, _ = subject("{{ row.title }}\n{{ row.status }}\r\nBcc: x@example.net", update)
    assert not any(ch in text for ch in FORBIDDEN_IN_HEADERS)
    assert text == "x Bcc: victim@example.net y full Bcc: x@example.net"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"subject": "{{ row.title"}, "route 'r0': subject is not a valid template: .*line 1"),
        ({"subject": "{{ rwo.title }}"}, "route 'r0': subject uses unknown variable.*rwo"),
        ({"subject": ""}, "route 'r0': subject must be a non-empty"),
        ({"subject": 3}, "route 'r0': subject must be a non-empty"),
        ({"label_field": ["title"]}, "route 'r0': label_field must be a column name"),
        (
            {"template": "../etc/passwd"},
            "route 'r0': template must be a template name.*'../etc/passwd'",
        ),
        ({"template": "weekly"}, "route 'r0': template 'weekly': weekly.subject.txt is missing"),
        # The digest's own triplet (herald/digests/email.py) is given other variables.
        ({"template": "digest"}, "route 'r0': template 'digest' is the digest email's"),
    ],
)
def test_a_route_option_that_can_never_work_is_refused_at_start(
    option: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(option)


# --- [mail] templates_dir -------------------------------------------------------------------


def test_templates_dir_overrides_the_packaged_files_it_holds(tmp_path: Path) -> None:
    (tmp_path / "notification.subject.txt").write_text("[Ops] {{ subject }}")
    s = settings({}, mail={"templates_dir": str(tmp_path)})
    assert s.mail_templates_dir == str(tmp_path.resolve())
    out = render_notification(
        [ChangeView(1, "classes", "UPDATE", {"id": 7}, OLD, NEW, AT)],
        summary=None, summary_note=None, route="r0", presentation=presentation_for(s, "r0"),
    )  # fmt: skip
    assert out.subject == '[Ops] Classes: "Welding basics" updated (seats, status)'
    assert out.text.startswith("Classes: Welding basics\n")  # the packaged text part


def test_a_route_template_is_read_from_templates_dir(tmp_path: Path) -> None:
    triplet(tmp_path, "brief", text="{{ headline }}: {{ byline }}")
    s = settings({"template": "brief"}, mail={"templates_dir": str(tmp_path)})
    out = render_notification(
        [ChangeView(1, "classes", "INSERT", {"id": 7}, None, NEW, AT)],
        summary=None, summary_note=None, route="r0", presentation=presentation_for(s, "r0"),
    )  # fmt: skip
    assert out.text == "Welding basics: Created 29 Nov 2026, 11:21 UTC"


def test_a_relative_templates_dir_is_read_from_the_config_files_folder(tmp_path: Path) -> None:
    triplet(tmp_path / "mail", "brief")
    config = tmp_path / "herald.toml"
    config.write_text('[mail]\ntemplates_dir = "mail"\n[[routes]]\ntemplate = "brief"\n')
    s = load_settings({"HERALD_CONFIG": str(config)})
    check_route_templates(s)
    assert s.mail_templates_dir == str((tmp_path / "mail").resolve())


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, r"\[mail\] templates_dir: templates_dir '.*' is not a folder"),
        ({"notification.html": "{% if %}"}, r"notification.html, line 1: Expected an expression"),
        ({"notification.txt": "{{ no_such_thing }}"}, r"notification.txt uses unknown .*no_such"),
        ({"notification.html": "{{ subject | no_filter }}"}, "No filter named 'no_filter'"),
        ({"weekly.html": "<p></p>"}, "template 'weekly': weekly.subject.txt is missing"),
        ({"notification.txt": b"\xff\xfe"}, "notification.txt: not UTF-8 text"),
    ],
)
def test_a_missing_or_broken_template_is_refused_at_start(
    tmp_path: Path, files: dict[str, str | bytes] | None, message: str
) -> None:
    folder = tmp_path / "templates"
    if files is not None:
        folder.mkdir()
        for name, content in files.items():
            path = folder / name
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        settings({}, mail={"templates_dir": str(folder)})


def test_a_route_template_missing_from_templates_dir_is_refused_naming_the_route(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="route 'r1': template 'weekly': weekly.subject.txt"):
        settings({}, {"template": "weekly"}, mail={"templates_dir": str(tmp_path)})


def test_herald_check_renders_each_template_on_sample_changes(tmp_path: Path) -> None:
    triplet(tmp_path, "notification", text="{% for c in changes %}{{ c.feilds }}{% endfor %}")
    settings({}, mail={"templates_dir": str(tmp_path)})  # compiles; names only known variables
    with pytest.raises(TemplateProblem, match="'notification' fails on a sample INSERT.*feilds"):
        check_templates(["notification"], str(tmp_path))
    check_templates(["notification"])  # the packaged triplet renders every sample


def test_the_templates_are_given_exactly_the_variables_the_checks_allow() -> None:
    update = ChangeView(1, "classes", "UPDATE", {"id": 7}, OLD, NEW, AT)
    context = render._context(
        [update], Presentation(), route="r", summary=None, summary_note=None, warnings=[]
    )
    assert set(context) == TEMPLATE_VARIABLES
    assert set(SUBJECT_FILTERS) <= set(_SANDBOX.filters)
