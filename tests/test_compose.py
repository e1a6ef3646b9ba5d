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


# -- least privilege: Herald's own database role, Grafana and Prometheus locked down ----------

ROLE_SCRIPT = REPO / "postgres" / "herald-role.sql"


def test_herald_connects_as_its_own_role_made_by_the_init_script(compose: dict) -> None:
    services = compose["services"]
    postgres = services["postgres"]
    superuser = postgres["environment"]["POSTGRES_USER"]
    assert superuser != "herald", "Herald's role must not be the superuser POSTGRES_USER makes"
    for name in HERALD_SERVICES:
        url = services[name]["environment"]["HERALD_DATABASE_URL"]
        assert url.startswith("postgresql://herald:${HERALD_DB_PASSWORD"), (name, url)
    assert str(postgres["environment"]["HERALD_DB_PASSWORD"]).startswith("${")
    mounts = [v.split(":") for v in postgres["volumes"] if isinstance(v, str)]
    init = ["./postgres/herald-role.sql", "/docker-entrypoint-initdb.d/10-herald-role.sql", "ro"]
    assert init in mounts
    script = ROLE_SCRIPT.read_text()
    assert "NOSUPERUSER" in script and "CREATE SCHEMA herald AUTHORIZATION herald" in script
    assert "\\getenv herald_password HERALD_DB_PASSWORD" in script  # no password in the file


def test_grafana_needs_a_password_and_shows_nothing_anonymously(compose: dict) -> None:
    env = compose["services"]["grafana"]["environment"]
    password = env["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD:?"), password  # required, no default
    assert str(env.get("GF_AUTH_ANONYMOUS_ENABLED", "false")).lower() == "false"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert "admin}" not in COMPOSE.read_text()


def test_prometheus_cannot_be_reconfigured_or_stopped_over_http(compose: dict) -> None:
    for name, service in compose["services"].items():
        command = service.get("command") or []
        assert "--web.enable-lifecycle" not in command, name
        assert "--web.enable-admin-api" not in command, name


@pytest.mark.integration
def test_the_init_script_makes_a_role_that_runs_herald_and_nothing_more(
    postgres_server, tmp_path: Path
) -> None:
    """The script on a real PostgreSQL: `herald db upgrade` and `herald track` work as the
    role it makes, which is no superuser and can create nothing outside its schema."""
    import psycopg

    from herald.migrate import upgrade
    from tests.services.postgres import _bin_dir

    url = postgres_server.create_database()
    as_herald = url.replace("://postgres@", "://herald@", 1)
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'herald'").fetchone():
            # A private test server never has one; a shared one (HERALD_TEST_DATABASE_URL)
            # might: skipped locally, a failure under CI=true.
            require_service("PostgreSQL without a role named herald", "one exists already")
    try:
        done = subprocess.run(
            [str(_bin_dir() / "psql"), "-X", "-q", "-d", url, "-f", str(ROLE_SCRIPT)],
            env={"HERALD_DB_PASSWORD": "a-local-password", "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        with psycopg.connect(as_herald) as conn:
            upgrade(conn)
            conn.commit()
            assert upgrade(conn) == []  # and again: safe to run twice as the role
            conn.commit()
            row = conn.execute(
                "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
                "WHERE rolname = current_user"
            ).fetchone()
            assert row == (False, False, False)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("CREATE SCHEMA elsewhere")
            conn.rollback()
        # The application's table (made by another role) is tracked by its owner, or by
        # Herald's role once the owner grants it TRIGGER (the first time; see the docs).
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE classes (id serial PRIMARY KEY, title text)")
            conn.execute("GRANT TRIGGER ON classes TO herald")
        with psycopg.connect(as_herald, autocommit=True) as conn:
            conn.execute("SELECT herald.track('public.classes')")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO classes (title) VALUES ('Yoga')")  # the owner writes
            [(count,)] = conn.execute("SELECT count(*) FROM herald.change_log").fetchall()
            assert count == 1
    finally:
        postgres_server.drop_database(url.rsplit("/", 1)[1])
        with psycopg.connect(postgres_server.url, autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS herald")


# -- the `cluster` profile: three RabbitMQ nodes for quorum queues (docs/operations.md) -------


def test_the_cluster_profile_is_three_rabbitmq_nodes_of_one_cluster(compose: dict) -> None:
    services = compose["services"]
    nodes = {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}
    assert sorted(nodes) == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    cookies = set()
    for name, node in nodes.items():
        assert node["hostname"] == name  # the node name rabbit@<hostname> must not change
        assert node["image"] == services["rabbitmq"]["image"]
        assert node["healthcheck"]["test"][-2:] == ["-q", "ping"]
        env = node["environment"]
        assert str(env["RABBITMQ_DEFAULT_PASS"]).startswith("${")
        cookie = env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
        assert cookie.startswith("-setcookie ${") and env["RABBITMQ_CTL_ERL_ARGS"] == cookie
        cookies.add(cookie)
        assert "./rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro" in node["volumes"]
    assert len(cookies) == 1  # one cookie for the three
    assert "cluster" not in str(services["rabbitmq"].get("profiles", []))  # the default stays
    conf = (REPO / "rabbitmq" / "cluster.conf").read_text()
    for line in (
        "cluster_partition_handling = pause_minority",
        "queue_leader_locator = balanced",
        "cluster_formation.peer_discovery_backend = classic_config",
        *(f"cluster_formation.classic_config.nodes.{n} = rabbit@rabbitmq-{n}" for n in (1, 2, 3)),
    ):
        assert line in conf.splitlines(), line
    # Herald reaches the cluster when HERALD_BROKER_URL (in .env) lists its nodes.
    url = compose["x-herald-environment"]["HERALD_BROKER_URL"]
    assert url.startswith("${HERALD_BROKER_URL:-amqp://"), url


def test_the_sample_app_runs_after_the_migrations(compose: dict) -> None:
    sample = compose["services"]["sample-app"]
    assert sample["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "./postgres/sample-app.sql:/sample-app.sql:ro" in sample["volumes"]


def test_the_sample_apps_changes_become_emails_under_the_stacks_configuration(
    database_url: str, stub_pipeline_factory
) -> None:
    """What `docker compose up` shows: the sample app's changes, routed by the stack's
    herald.toml (herald.example.toml), become emails at once (no Docker needed here)."""
    from herald.db import connect
    from herald.migrate import upgrade

    with connect(database_url) as conn:
        upgrade(conn)
        conn.execute((REPO / "postgres" / "sample-app.sql").read_text())
        conn.commit()
    pipeline = stub_pipeline_factory(database_url, REPO / "herald.example.toml")
    pipeline.orchestrate()
    subjects = sorted(str(m.message["Subject"]) for m in pipeline.mailer.sent)
    recipients = sorted(to for m in pipeline.mailer.sent for to in m.to_addrs)
    assert recipients == ["front-desk@example.com", "membership@example.com", "ops@example.com"]
    assert any("Welding basics" in s for s in subjects), subjects
