"""/livez, /readyz and /health against real PostgreSQL and RabbitMQ, up and down."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from herald.web.app import create_app
from herald.web.broker import AmqpProbe
from herald.web.health import queue_names
from tests.api_fixtures import Api, api, herald_app, seeded  # noqa: F401 - fixtures
from tests.services import free_port

pytestmark = pytest.mark.integration


def checks(response) -> dict:
    return response.json()["checks"]


def test_liveness_answers_without_a_token_and_checks_nothing(api: Api) -> None:
    response = api.get("/livez", token=None)
    assert response.status_code == 200 and response.json() == {"status": "pass"}


def test_ready_when_postgresql_and_rabbitmq_answer_and_the_schema_is_current(api: Api) -> None:
    response = api.get("/readyz", token=None)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/health+json"
    body = response.json()
    assert body["status"] == "pass"
    assert set(body["checks"]) == {"postgresql:responseTime", "postgresql:migrations",
                                   "rabbitmq:responseTime"}  # fmt: skip


def test_not_ready_while_a_migration_is_missing(api: Api) -> None:
    api.sql("DELETE FROM herald.migrations WHERE name = '0007_api_indexes'")
    response = api.get("/readyz", token=None)
    assert response.status_code == 503
    migrations = checks(response)["postgresql:migrations"][0]
    assert migrations["status"] == "fail" and "0007_api_indexes" in migrations["output"]


def test_not_ready_and_failing_when_rabbitmq_is_unreachable(herald_db, pool) -> None:
    dead = f"amqp://guest:secret-password@127.0.0.1:{free_port()}/%2F"
    app = herald_app(herald_db, pool, dead)
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        ready = client.get("/readyz")
        health = client.get("/health")
    assert ready.status_code == 503 and health.status_code == 503
    broker = health.json()["checks"]["rabbitmq:responseTime"][0]
    assert broker["status"] == "fail" and "unreachable" in broker["output"]
    assert "secret-password" not in ready.text + health.text
    assert health.json()["status"] == "fail"


def test_not_ready_when_postgresql_is_unreachable(herald_db, rabbitmq_url, pool) -> None:
    dead = ConnectionPool(f"postgresql://postgres@127.0.0.1:{free_port()}/x", min_size=0,
                          max_size=1, kwargs={"row_factory": dict_row}, open=True)  # fmt: skip
    app = herald_app(herald_db, pool, rabbitmq_url)
    object.__setattr__(app, "pool", dead)
    try:
        with TestClient(create_app(app), raise_server_exceptions=False) as client:
            started = time.perf_counter()
            ready = client.get("/readyz")
            elapsed = time.perf_counter() - started
            health = client.get("/health")
            live = client.get("/livez")
    finally:
        dead.close()
    assert ready.status_code == 503 and health.status_code == 503 and live.status_code == 200
    assert checks(ready)["postgresql:responseTime"][0]["status"] == "fail"
    assert elapsed < 5, "a dead database must not hang the probe"


def test_health_reports_the_ledger_queues_and_breakers(api: Api, seeded) -> None:
    api.post(f"/api/jobs/{seeded['failed'][0]}/retry")  # one message into the email queue
    response = api.get("/health", token=None)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/health+json"
    body = response.json()
    found = body["checks"]
    assert found["jobs:pending"][0]["observedValue"] == 4
    assert found["jobs:running"][0]["observedValue"] == 1
    assert found["jobs:failed"][0]["observedValue"] == 0
    assert found["jobs:oldestPendingAge"][0]["observedUnit"] == "s"
    assert found["changes:unclaimed"][0]["observedValue"] == 0
    assert found["orchestrator:lastSuccess"][0]["status"] == "pass"  # the seed ran it just now
    queues = {c["componentId"]: c for c in found["rabbitmq:messagesReady"]}
    assert queues["email"]["observedValue"] == 1 and queues["email"]["exists"] is True
    assert queues["enrich.XQ"]["exists"] is False  # never declared: reported, not an error
    assert {b["componentId"]: b["observedValue"] for b in found["circuitBreaker:state"]} == {
        "ai": "closed", "smtp": "closed"}  # fmt: skip
    for entries in found.values():
        for check in entries:
            assert check["status"] in ("pass", "warn", "fail") and "time" in check
    assert body["status"] == "pass"


def test_an_open_breaker_or_a_backlog_is_a_warning_not_a_failure(api: Api, seeded) -> None:
    api.sql("UPDATE herald.circuit_breakers SET state = 'open', consecutive_failures = 5, "
            "opened_at = now() WHERE breaker = 'smtp'")  # fmt: skip
    api.sql(
        "UPDATE herald.jobs SET created_at = now() - interval '1 hour' WHERE status = 'pending'"
    )
    response = api.get("/health", token=None)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "warn"
    smtp = [b for b in body["checks"]["circuitBreaker:state"] if b["componentId"] == "smtp"][0]
    assert smtp["status"] == "warn" and smtp["observedValue"] == "open"
    assert body["checks"]["jobs:oldestPendingAge"][0]["status"] == "warn"


def test_readiness_is_fast(api: Api) -> None:
    api.get("/readyz", token=None)  # connections opened
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        assert api.get("/readyz", token=None).status_code == 200
        timings.append(time.perf_counter() - started)
    assert sorted(timings)[18] < 0.05, timings  # p95; the benchmark's target is 20 ms


def test_the_probe_redials_a_connection_the_broker_closed(rabbitmq_url) -> None:
    probe = AmqpProbe(rabbitmq_url)
    try:
        probe.ping()
        assert probe._connection is not None
        probe._connection.close()  # as a broker restart would
        probe.ping()
        assert [d.exists for d in probe.depths(["nope"])] == [False]
        probe.ping()  # the channel the 404 closed is reopened
    finally:
        probe.close()


def test_on_quorum_queues_health_names_each_priority_level_of_enrich_and_email() -> None:
    classic, quorum = queue_names("classic"), queue_names("quorum")
    assert {"email", "email.DQ", "email.XQ"} <= set(classic)
    assert not {name for name in classic if ".urgent" in name or ".low" in name}
    for queue in ("enrich", "email"):  # the queues whose jobs carry a priority
        assert {f"{queue}.urgent", f"{queue}.urgent.DQ", queue, f"{queue}.DQ",
                f"{queue}.low", f"{queue}.low.DQ", f"{queue}.XQ"} <= set(quorum)  # fmt: skip
    assert "orchestrate.urgent" not in quorum and "orchestrate.XQ" in quorum
    assert len(set(quorum)) == len(quorum)
