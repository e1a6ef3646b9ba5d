"""Prometheus configuration, alert rules and Alertmanager routing.

Runs Debian's ``promtool`` and ``amtool`` (packages ``prometheus`` and
``prometheus-alertmanager``) over ``prometheus/``; without them the tests skip
locally and fail under ``CI=true``. Then checks in Python that every alert carries
what an operator needs (severity, summary, description, a runbook section that
exists in docs/operations.md) and has a unit test in alerts.test.yml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitoring import metrics
from tests.services import require_service

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS = REPO / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
OPERATIONS = REPO / "docs" / "operations.md"


def tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        package = "prometheus" if name == "promtool" else "prometheus-alertmanager"
        require_service(name, f"not installed (apt-get install {package})")
    return found


def run(*command: str) -> subprocess.CompletedProcess[str]:
    # cwd=prometheus/: rule_files and test files name their neighbours relatively.
    return subprocess.run(
        command, cwd=PROMETHEUS, capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules() -> list[dict]:
    return [
        rule
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def github_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading."""
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


# ------------------------------------------------------------------ promtool / amtool


def test_prometheus_config_is_valid() -> None:
    result = run(tool("promtool"), "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid() -> None:
    result = run(tool("promtool"), "check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_unit_tests_pass() -> None:
    result = run(tool("promtool"), "test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_alertmanager_config_is_valid() -> None:
    result = run(tool("amtool"), "check-config", "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=HeraldStuck"], "ops-critical"),
        (["severity=warning", "alertname=HeraldBacklogHigh"], "ops-email"),
    ],
)
def test_alertmanager_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = run(
        tool("amtool"),
        "config",
        "routes",
        "test",
        "--config.file=alertmanager.yml",
        f"--verify.receivers={receiver}",
        *labels,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------- rule content


def test_every_alert_is_actionable() -> None:
    rules = alert_rules()
    assert len({r["alert"] for r in rules}) >= 13
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"Herald[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook_url"):
            assert annotations.get(key, "").strip(), f"{name}: no {key}"
        text = annotations["summary"] + annotations["description"]
        if not rule["expr"].startswith("absent("):  # absent() has no series to name
            assert "$labels" in text or "$value" in text, (
                f"{name}: summary/description should say which series and how bad"
            )
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name


def test_every_alert_has_a_runbook_section() -> None:
    text = OPERATIONS.read_text()
    anchors = {github_anchor(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"docs/operations.md has no section #{anchor}"
        assert f"### {rule['alert']}\n" in text


def test_every_alert_has_unit_tests_firing_and_quiet() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
            for alert in check.get("exp_alerts") or []:
                assert {"summary", "description", "runbook_url"} <= alert["exp_annotations"].keys()
    names = {rule["alert"] for rule in alert_rules()}
    assert names <= fires, f"alerts never shown to fire: {names - fires}"
    assert names <= quiet, f"alerts never shown to stay quiet: {names - quiet}"


def test_alerts_cover_the_issue() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "HeraldBacklogHigh",
        "HeraldOldestPendingTooOld",
        "HeraldFailureRatioHigh",
        "HeraldStuck",
        "HeraldQueueNoConsumers",
        "HeraldDeadLettersGrowing",
        "HeraldOrchestratorNotSucceeding",
        "HeraldOrchestratorAbsent",
        "HeraldWorkerDown",
        "HeraldCircuitBreakerOpen",
        "HeraldAITokenBudgetExceeded",
    } <= names


def test_queue_alerts_cover_every_known_queue() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "HeraldQueueNoConsumers"]
    found = re.search(r'queue=~"([^"]+)"', rule["expr"])
    assert found is not None, rule["expr"]
    pattern = found.group(1).replace("\\\\", "\\")
    for queue in metrics.KNOWN_ACTORS.values():
        assert re.fullmatch(pattern, queue) and re.fullmatch(pattern, f"{queue}.DQ"), queue
        assert not re.fullmatch(pattern, f"{queue}.XQ"), "dead-letter queues have no consumers"


def test_scrape_jobs_match_what_the_alerts_expect() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    used = {job for rule in alert_rules() for job in re.findall(r'job=~?"([\w|-]+)"', rule["expr"])}
    for job in used:
        assert set(job.split("|")) <= jobs, f"alert expects scrape job {job}"
    assert config["rule_files"] == ["alerts.yml"]
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager:9093"]
