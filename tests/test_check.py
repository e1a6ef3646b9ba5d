"""`herald check`: the configuration against real services, up and down ("down": a port
nobody listens on). Each check is one line with a status; any failure exits non-zero."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from herald.check import run_checks
from herald.check.results import CheckResult
from herald.check.services import check_ai, check_rabbitmq, check_smtp
from herald.cli.check import format_checklist
from tests.helpers import ROUTES, make_settings, sql
from tests.services import free_port

SECRET = "s3cret-Passw0rd"


def world(db: str, mq: str, smtp: str, ai: str | None, raw: dict[str, Any] | None = None):
    """Settings and environment naming these services (no AI key when `ai` is None)."""
    env = {"HERALD_DATABASE_URL": db, "HERALD_BROKER_URL": mq, "HERALD_SMTP_URL": smtp}
    if ai is not None:
        env.update(OPENAI_API_KEY="sk-test-key", OPENAI_BASE_URL=ai)
    return make_settings(db, raw, **env), env


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def statuses(results: list[CheckResult]) -> dict[str, str]:
    return {r.name: r.status for r in results}


# -- everything up ---------------------------------------------------------------------------


def test_with_every_service_up_every_check_passes(
    herald_db, rabbitmq_url, smtp_server, openai_server
):
    settings, env = world(herald_db, rabbitmq_url, smtp_server.url, openai_server.base_url)
    results = run_checks(settings, env)
    assert statuses(results) == {
        "HERALD_DATABASE_URL": "ok",
        "HERALD_BROKER_URL": "ok",
        "database": "ok",
        "route new-members": "ok",
        "route classes": "ok",
        "recipients": "ok",
        "templates": "ok",
        "rabbitmq": "ok",
        "smtp": "ok",
        "ai": "ok",
    }
    checks = by_name(results)
    assert "schema up to date" in checks["database"].detail
    assert checks["route classes"].detail == "UPDATE on public.classes -> 2 recipient(s)"
    assert checks["smtp"].detail == f"127.0.0.1:{smtp_server.port}: EHLO"
    # test-model is not in the fake server's models list: one token proves it answers
    assert "model test-model answered a one-token completion" in checks["ai"].detail
    assert openai_server.requests[-1]["max_tokens"] == 1


def test_smtp_login_is_tried_when_configured(make_smtp_server):
    server = make_smtp_server(username="herald", password=SECRET)
    settings, _ = world("postgresql://x/y", "stub://", server.url, None)
    result = check_smtp(settings)
    assert (result.status, result.detail) == (
        "ok",
        f"127.0.0.1:{server.port}: EHLO, logged in as herald",
    )
    wrong = server.url.replace(SECRET, "wrong-password")
    result = check_smtp(world("postgresql://x/y", "stub://", wrong, None)[0])
    assert result.status == "fail"
    assert result.detail.startswith(f"127.0.0.1:{server.port}: login as herald refused (5")
    assert SECRET not in result.detail


def test_ai_off_is_skipped_not_failed():
    settings, _ = world("postgresql://x/y", "stub://", "smtp://127.0.0.1:25", None)
    assert check_ai(settings) == CheckResult(
        "ai", "skip", "AI off (no OPENAI_API_KEY): emails carry the offline summary"
    )


# -- everything down -------------------------------------------------------------------------


def test_with_every_service_down_each_fails_in_one_line_and_quickly():
    db, mq, smtp, ai = (free_port() for _ in range(4))
    settings, env = world(
        f"postgresql://herald:{SECRET}@127.0.0.1:{db}/herald",
        f"amqp://herald:{SECRET}@127.0.0.1:{mq}/herald",
        f"smtp://herald:{SECRET}@127.0.0.1:{smtp}",
        f"http://127.0.0.1:{ai}/v1",
    )
    started = time.monotonic()
    results = run_checks(settings, env)
    assert time.monotonic() - started < 10
    checks = by_name(results)
    assert checks["database"].detail == (
        f"127.0.0.1:{db}/herald: cannot connect: Connection refused"
    )
    assert checks["routes"].status == "skip"
    assert checks["rabbitmq"].status == "fail"
    assert checks["rabbitmq"].detail.startswith(f"cannot connect: 127.0.0.1:{mq} vhost herald: ")
    assert checks["smtp"].detail == f"127.0.0.1:{smtp}: cannot connect: Connection refused"
    assert checks["ai"].detail == f"http://127.0.0.1:{ai}/v1: APIConnectionError: Connection error."
    assert {r.status for r in results if r.name in ("database", "rabbitmq", "smtp", "ai")} == {
        "fail"
    }
    assert SECRET not in json.dumps([r.as_dict() for r in results])


def test_before_db_upgrade_the_database_check_says_to_run_it(database_url):
    settings, env = world(database_url, "stub://", "file:///tmp", None)
    result = by_name(run_checks(settings, env, services=()))["database"]
    assert result.status == "fail"
    assert result.detail.endswith("the herald schema is missing: run `herald db upgrade`")


def test_missing_variables_fail_and_their_checks_are_skipped():
    settings = make_settings("postgresql://x/y")
    results = by_name(run_checks(settings, {}, services=(check_rabbitmq,)))
    assert results["HERALD_DATABASE_URL"].status == "fail"
    assert "e.g. HERALD_DATABASE_URL=postgresql://" in results["HERALD_DATABASE_URL"].detail
    assert results["database"] == CheckResult("database", "skip", "HERALD_DATABASE_URL not set")
    assert results["rabbitmq"] == CheckResult("rabbitmq", "skip", "HERALD_BROKER_URL not set")


# -- routes against the tables ---------------------------------------------------------------


def test_routes_that_can_never_match_are_failures(herald_db):
    sql(herald_db, "CREATE TABLE rooms (id int PRIMARY KEY)")  # exists, not tracked
    sql(herald_db, "CREATE TABLE audit (id int PRIMARY KEY); SELECT herald.track('audit')")
    raw = {
        **ROUTES,
        "routes": [
            *ROUTES["routes"],
            {"name": "rooms", "table": "rooms", "recipients": ["a@example.com"]},
            {"name": "ghost", "table": "ghosts", "recipients": ["a@example.com"]},
            {"name": "none", "table": "members", "operations": [], "recipients": ["a@b.co"]},
            {
                "name": "late",
                "table": "members",
                "operations": ["INSERT"],
                "recipients": ["a@b.co"],
            },
            {"name": "quiet", "table": "classes", "operations": ["DELETE"]},
        ],
    }
    settings, env = world(herald_db, "stub://", "file:///tmp", None, raw)
    checks = by_name(run_checks(settings, env, services=()))
    assert checks["route rooms"] == CheckResult(
        "route rooms", "fail", "table 'rooms' exists but is not tracked: run `herald track rooms`"
    )
    assert checks["route ghost"] == CheckResult(
        "route ghost", "fail", "table 'ghosts' does not exist"
    )
    assert (
        checks["route none"].detail == "can never match: operations is empty: it matches no change"
    )
    assert checks["route late"].detail == (
        "can never match: every change it matches goes to an earlier route ('new-members')"
    )
    assert checks["route quiet"] == CheckResult(
        "route quiet", "warn", "no recipients: its changes are skipped (and counted)"
    )
    assert checks["table public.audit"] == CheckResult(
        "table public.audit", "warn", "tracked, but no route: its changes are skipped"
    )


def test_a_broken_template_is_a_failed_check(herald_db, tmp_path):
    for name, text in (
        ("notification.subject.txt", "{{ subject }}"),
        ("notification.txt", "{{ headline }}"),
        ("notification.html", "<p>{{ headline }}</p>"),
    ):
        (tmp_path / name).write_text(text)
    settings, env = world(herald_db, "stub://", "file:///tmp", None)
    assert by_name(run_checks(settings, env, services=()))["templates"].status == "ok"
    broken = settings.__class__(**{**settings.__dict__, "mail_templates_dir": str(tmp_path)})
    (tmp_path / "notification.html").write_text("{% if %}")
    result = by_name(run_checks(broken, env, services=()))["templates"]
    assert result.status == "fail" and "notification.html" in result.detail


# -- the command -----------------------------------------------------------------------------


def herald_check(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))}
    exe = shutil.which("herald")
    command = [exe] if exe else [sys.executable, "-m", "herald.cli.main"]
    return subprocess.run(
        [*command, "check", *args], cwd=cwd, env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_herald_check_exits_0_when_all_is_well_and_prints_json(
    herald_db, rabbitmq_url, smtp_server, tmp_path
):
    config = tmp_path / "herald.toml"
    config.write_text(
        '[mail]\nfrom = "Herald <herald@example.com>"\n[[routes]]\ntable = "members"\n'
        'recipients = ["ops@example.com"]\n[[routes]]\ntable = "classes"\n'
        'recipients = ["ops@example.com"]\n'
    )
    env = {
        "HERALD_DATABASE_URL": herald_db,
        "HERALD_BROKER_URL": rabbitmq_url,
        "HERALD_SMTP_URL": smtp_server.url,
        "HERALD_CONFIG": str(config),
    }
    result = herald_check("--json", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {c["name"]: c["status"] for c in report["checks"]}["ai"] == "skip"
    text = herald_check(env=env, cwd=tmp_path)
    assert text.returncode == 0
    assert text.stdout.splitlines()[0].startswith(f"[ok  ] configuration        {config}")


def test_herald_check_exits_1_on_a_failure_and_2_on_a_refused_configuration(tmp_path):
    down = {
        "HERALD_DATABASE_URL": f"postgresql://h:{SECRET}@127.0.0.1:{free_port()}/h",
        "HERALD_BROKER_URL": "stub://",
        "HERALD_SMTP_URL": "file:///tmp",
    }
    result = herald_check(env=down, cwd=tmp_path)
    assert result.returncode == 1
    assert "[FAIL] database" in result.stdout and SECRET not in result.stdout
    assert result.stderr.strip() == "herald check: some checks failed"
    (tmp_path / "herald.toml").write_text("[[routes]]\nrecipient = ['x@example.com']\n")
    refused = herald_check("--json", env=down, cwd=tmp_path)
    assert refused.returncode == 2
    (only,) = json.loads(refused.stdout)["checks"]
    assert only["name"] == "configuration" and "unknown option" in only["detail"]


def test_the_checklist_reads_as_a_list(herald_db):
    text = format_checklist(
        [CheckResult("database", "ok", "up"), CheckResult("smtp", "fail", "down")]
    )
    assert text.splitlines() == [
        "[ok  ] database  up",
        "[FAIL] smtp      down",
        "",
        "1 ok, 0 warning(s), 1 failed, 0 skipped",
    ]


@pytest.mark.parametrize("url", ["amqp://guest:guest@127.0.0.1:1/%2F;amqp://x@127.0.0.1:2/v"])
def test_each_broker_node_is_tried(url):
    result = check_rabbitmq(make_settings("postgresql://x/y", HERALD_BROKER_URL=url))
    assert result.status == "fail"
    assert "127.0.0.1:1 vhost /" in result.detail and "127.0.0.1:2 vhost v" in result.detail


def test_a_refused_broker_login_is_a_failure_that_shows_no_password(rabbitmq_url):
    from urllib.parse import urlsplit

    parts = urlsplit(rabbitmq_url)
    wrong = rabbitmq_url.replace(f":{parts.password}@", f":{SECRET}@")
    result = check_rabbitmq(make_settings("postgresql://x/y", HERALD_BROKER_URL=wrong))
    assert result.status == "fail" and SECRET not in result.detail
    assert "ACCESS_REFUSED" in result.detail or "authentication" in result.detail.lower()
