"""`herald.example.toml` documents every option Herald accepts, and what it shows loads:
as it is, and with every optional (commented) setting switched on."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

from herald import config
from herald.config import load_toml, settings_from_mapping

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "herald.example.toml"
PACKAGED_TEMPLATES = REPO / "herald" / "email" / "templates"
SECTION = re.compile(r"^#?\s*\[\[?([\w.]+)\]\]?")
OPTION = re.compile(r"^#?\s*(\w+)\s*=")


def accepted() -> dict[str, set[str]]:
    """Every option of every section, as the models read them (`retries`: any actor's)."""
    return config.known_options()


def documented() -> dict[str, set[str]]:
    """The options the example names, commented or not, by section (`retries.x`: retries)."""
    found: dict[str, set[str]] = {}
    section = ""
    for line in EXAMPLE.read_text().splitlines():
        if match := SECTION.match(line):
            section = match[1].split(".")[0]
        elif (match := OPTION.match(line)) and section:
            found.setdefault(section, set()).add(match[1])
    return found


def test_every_option_herald_accepts_is_documented() -> None:
    shown = documented()
    missing = {
        section: sorted(names - shown.get(section, set()))
        for section, names in accepted().items()
        if names - shown.get(section, set())
    }
    assert missing == {}


def test_the_example_documents_nothing_herald_refuses() -> None:
    known = accepted()
    unknown = {
        section: sorted(names - known.get(section, set()))
        for section, names in documented().items()
        if names - known.get(section, set())
    }
    assert unknown == {}


def test_the_example_loads() -> None:
    settings = settings_from_mapping(load_toml(EXAMPLE), {})
    assert [r.name for r in settings.routes] == ["new-members", "class-changes", "member-updates"]
    digest = settings.routes[-1]
    assert (digest.mode, digest.digest, digest.digest_timezone) == (
        "digest", "weekly mon 09:00", "Africa/Johannesburg")  # fmt: skip


def switched_on(text: str, names: set[str]) -> str:
    """The example with its commented sections and options (those named `names`) uncommented."""
    lines = []
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else ""
        option = OPTION.match(body)
        if SECTION.match(body) or (option and option[1] in names):
            line = body
        lines.append(line)
    return "\n".join(lines)


def test_the_example_loads_with_every_optional_setting_switched_on(tmp_path: Path) -> None:
    """The commented settings are examples a reader copies: they must be valid too."""
    shutil.copytree(PACKAGED_TEMPLATES, tmp_path / "templates")  # [mail] templates_dir
    names = {name for options in accepted().values() for name in options}
    raw = tomllib.loads(switched_on(EXAMPLE.read_text(), names))
    env = {"HERALD_SECRET_KEY": "k" * 32}  # [api] public_url signs its links with it
    settings = settings_from_mapping(raw, env, config_path=str(tmp_path / "herald.toml"))
    assert settings.mail_templates_dir == str((tmp_path / "templates").resolve())
    assert settings.limits.emails_per_second == 10
    assert settings.retries["send_email"].max_retries == 8
    members, classes, digest = settings.routes
    assert members.subject and members.label_field == "email"
    assert members.recipient_fields == ("coordinator_email",)
    assert classes.debounce_window_max == 600 and classes.label_field == "title"
    assert (digest.mode, digest.digest) == ("digest", "weekly mon 09:00")
