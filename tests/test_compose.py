"""docker-compose.yml, checked without Docker.

The compose specification check runs ``dclint`` (npm, offline schema validation);
the rest parses the file with PyYAML: every mounted host path exists, every
``depends_on`` names a service, the stateful services have healthchecks, and the
Herald services get the configuration the design names.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.services import in_ci, require_service

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
HERALD_SERVICES = ("migrate", "worker", "scheduler", "exporter")
# Added by the configuration work, not by the monitoring work; until it lands the
# mount is reported (xfail locally, failure in CI) instead of silently exempted.
PENDING_FILES = {"herald.example.toml"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dclint() -> str:
    found = shutil.which("dclint")
    if not found:
        require_service("dclint", "not installed (npm install -g dclint)")
    return found


def test_compose_file_matches_the_specification(tmp_path: Path) -> None:
    binary = dclint()
    # --quiet: errors only (schema violations); style warnings (key order) are advice.
    result = subprocess.run(
        [binary, "--quiet", "--color", "false", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # And dclint does reject what the specification forbids (not a no-op here).
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  web:\n    image: nginx\n    not_a_compose_key: 1\n")
    result = subprocess.run(
        [binary, "--quiet", "--color", "false", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0 and "invalid-schema" in result.stdout, result.stdout


def bind_sources(compose: dict) -> list[tuple[str, str]]:
    """(service, host path) for every bind mount (relative or absolute host path)."""
    found = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                source = volume.split(":", 1)[0]
                is_bind = source.startswith((".", "/", "~"))
            else:
                source, is_bind = volume.get("source"), volume.get("type") == "bind"
            if source and is_bind:
                found.append((name, source))
    return found


def test_every_bind_mount_exists(compose: dict) -> None:
    sources = bind_sources(compose)
    assert sources, "expected bind mounts (prometheus/, grafana/)"
    missing = [(svc, src) for svc, src in sources if not (REPO / src).resolve().exists()]
    pending = [(s, p) for s, p in missing if Path(p).name in PENDING_FILES]
    assert not [m for m in missing if m not in pending], f"missing host paths: {missing}"
    if pending:
        message = f"mounted but not in the repository yet: {sorted({p for _s, p in pending})}"
        if in_ci():
            pytest.fail(message)
        pytest.xfail(message)


def test_named_volumes_are_declared(compose: dict) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} not declared"


def test_dependencies_exist(compose: dict) -> None:
    services = set(compose["services"])
    for name, service in compose["services"].items():
        depends = service.get("depends_on", [])
        for dependency in depends:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        if isinstance(depends, dict):
            for dependency, spec in depends.items():
                if spec.get("condition") == "service_healthy":
                    assert "healthcheck" in compose["services"][dependency], dependency


def test_stateful_services_have_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["rabbitmq"]["healthcheck"]["test"][-2:] == ["-q", "ping"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:4") and services["rabbitmq"][
        "image"
    ].endswith("-management")
    env = services["rabbitmq"]["environment"]
    assert {"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", "RABBITMQ_DEFAULT_VHOST"} <= set(env)


def test_the_stack_is_complete(compose: dict) -> None:
    expected = {
        "postgres",
        "rabbitmq",
        "migrate",
        "worker",
        "scheduler",
        "exporter",
        "prometheus",
        "alertmanager",
        "grafana",
        "mailpit",
    }
    assert expected <= set(compose["services"])
    services = compose["services"]
    assert services["migrate"]["command"] == ["herald", "db", "upgrade"]
    assert services["worker"]["command"][:2] == ["dramatiq", "herald.worker:setup"]
    assert services["scheduler"]["command"] == ["periodiq", "herald.worker:setup"]
    assert services["exporter"]["command"] == ["herald", "metrics", "serve"]
    for name in ("worker", "scheduler", "exporter"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_herald_services_are_configured_without_hard_coded_secrets(compose: dict) -> None:
    required = {
        "HERALD_DATABASE_URL",
        "HERALD_BROKER_URL",
        "HERALD_SMTP_URL",
        "HERALD_MAIL_FROM",
        "HERALD_CONFIG",
        "HERALD_METRICS_PORT",
        "OPENAI_API_KEY",
    }
    for name in HERALD_SERVICES:
        env = compose["services"][name]["environment"]
        assert required <= set(env), f"{name}: missing {required - set(env)}"
        assert env["HERALD_SMTP_URL"] == "smtp://mailpit:1025"
        assert env["OPENAI_API_KEY"] == "${OPENAI_API_KEY:-}"
    assert compose["services"]["exporter"]["environment"]["HERALD_METRICS_PORT"] == "9192"
    text = COMPOSE.read_text()
    assert "sk-" not in text, "an API key in docker-compose.yml"
    # Passwords only as ${VAR:-local-default}.
    for key in ("POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "GF_SECURITY_ADMIN_PASSWORD"):
        for service in compose["services"].values():
            value = (service.get("environment") or {}).get(key)
            if value is not None:
                assert str(value).startswith("${"), f"{key} hard-coded"


def test_published_ports_bind_loopback(compose: dict) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on all interfaces"


def test_prometheus_scrapes_the_compose_services(compose: dict) -> None:
    config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    hosts = set()
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            hosts |= {t.split(":")[0] for t in static["targets"]}
        for dns in job.get("dns_sd_configs", []):
            hosts |= set(dns["names"])
    hosts.discard("localhost")
    assert hosts <= set(compose["services"]), hosts - set(compose["services"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["rabbitmq"]["metrics_path"] == "/metrics/detailed"
    assert set(jobs["rabbitmq"]["params"]["family"]) == {
        "queue_coarse_metrics",
        "queue_consumer_count",
    }


def test_dockerfile_runs_unprivileged() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "pip install ." in text
    assert "\nUSER " in text
    assert 'CMD ["dramatiq", "herald.worker:setup"' in text
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".git" in ignored
