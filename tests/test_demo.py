"""`herald demo` end to end, as a user runs it: a subprocess, embedded PostgreSQL, no key.

Run as a subprocess because the demo must bind the actors to the in-memory broker
before they are imported, and because exit codes and printed output are the contract.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from herald.email.deliver import SUMMARY_OFFLINE

CHANGES = 12
# The demo's plan for 12 changes: 8 member INSERTs (one recipient), 3 class UPDATEs (two
# recipients), 1 DELETE with no route.
MEMBER_EMAILS, CLASS_UPDATES = 8, 3
CLASS_RECIPIENTS = {"coach@demo.invalid", "front-desk@demo.invalid"}


def herald(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed console script (or the module) without an OpenAI key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HERALD_MAIL_FROM", "HERALD_CONFIG")
    }
    exe = shutil.which("herald")
    command = [exe] if exe else [sys.executable, "-m", "herald.cli.main"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One demo run shared by the assertions below (it takes a few seconds)."""
    cwd = tmp_path_factory.mktemp("demo")
    out = cwd / "mail"
    return herald("demo", "--out", str(out), "--changes", str(CHANGES), cwd=cwd), out


def messages(out: Path) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(out.glob("*.eml"))
    ]


def test_demo_exits_0_and_prints_the_summary_table(demo_run):
    result, out = demo_run
    assert result.returncode == 0, result.stderr
    table = result.stdout
    assert re.search(rf"changes made\s+{CHANGES}\b", table)
    assert re.search(rf"routed\s+{MEMBER_EMAILS + CLASS_UPDATES}\b", table)
    assert re.search(r"skipped\s+1\b", table)
    assert re.search(r"failed\s+0\b", table)
    expected = MEMBER_EMAILS + 2 * CLASS_UPDATES
    assert re.search(rf"emails written\s+{expected} of {expected}", table)
    assert re.search(rf"summaries\s+{MEMBER_EMAILS} offline", table)
    assert str(out.resolve()) in table
    assert ".eml" in table and "README" in table
    assert "emails sent" in result.stderr  # progress (plain lines: stderr is not a terminal)


def test_demo_writes_one_parseable_eml_per_delivery(demo_run):
    result, out = demo_run
    assert result.returncode == 0, result.stderr
    msgs = messages(out)
    assert len(msgs) == MEMBER_EMAILS + 2 * CLASS_UPDATES
    for msg in msgs:
        assert msg["Message-ID"] and msg["X-Herald-Change-Id"]
        assert str(msg["From"]) == "Herald Demo <herald@demo.invalid>"
    assert len({m["Message-ID"] for m in msgs}) == len(msgs)


def test_member_emails_carry_the_offline_summary_note(demo_run):
    _, out = demo_run
    members = [m for m in messages(out) if str(m["To"]) == "membership@demo.invalid"]
    assert len(members) == MEMBER_EMAILS
    for msg in members:
        part = msg.get_body(preferencelist=("plain",))
        assert part is not None
        body = part.get_content()
        assert SUMMARY_OFFLINE in body
        assert "members" in str(msg["Subject"])


def test_each_class_update_reaches_both_recipients(demo_run):
    _, out = demo_run
    by_change: dict[str, set[str]] = defaultdict(set)
    for msg in messages(out):
        if "classes" in str(msg["Subject"]):
            by_change[str(msg["X-Herald-Change-Id"])].add(str(msg["To"]))
    assert len(by_change) == CLASS_UPDATES
    assert all(recipients == CLASS_RECIPIENTS for recipients in by_change.values())


def test_output_path_that_is_a_file_is_refused_in_one_line(tmp_path):
    target = tmp_path / "not-a-dir"
    target.write_text("I am a file")
    result = herald("demo", "--out", str(target), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("herald demo: output directory")
    assert "not a directory" in lines[0]


def test_output_directory_that_cannot_be_created_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = herald("demo", "--out", str(blocker / "mail"), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("herald demo: cannot create output directory")
    assert "Traceback" not in result.stderr


def test_changes_out_of_range_is_refused(tmp_path):
    result = herald(
        "demo", "--out", str(tmp_path / "mail"), "--changes", "0", cwd=tmp_path, timeout=60
    )
    assert result.returncode == 1
    assert "--changes must be between 1 and" in result.stderr
    assert not (tmp_path / "mail").exists()
