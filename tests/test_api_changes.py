"""POST /api/changes and the change's trace; POST /api/orchestrate; GET /api/stats."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from herald.web.app import create_app
from herald.web.broker import AmqpProbe
from orchestrator.orchestrate import run_orchestrator
from tests.api_fixtures import AS_OPERATOR, Api, api, seeded  # noqa: F401 - fixtures
from tests.helpers import RecordingPublisher, make_settings

pytestmark = pytest.mark.integration

CLASS_UPDATE = {"table": "classes", "operation": "UPDATE",
                "row": {"id": 7, "title": "Yoga", "seats": 3},
                "old_row": {"id": 7, "title": "Yoga", "seats": 4}}  # fmt: skip


def send(api: Api, body, **kw):
    return api.post("/api/changes", json=body, **kw)


def test_a_change_enters_the_log_as_the_trigger_would_and_is_traced(
    api: Api, pool: ConnectionPool
) -> None:
    response = send(api, CLASS_UPDATE)
    assert response.status_code == 202, response.text
    change_id = response.json()["change_id"]
    assert response.json() == {"change_id": change_id, "status": "queued"}
    assert response.headers["location"] == f"/api/changes/{change_id}"
    row = api.sql("SELECT * FROM herald.change_log WHERE id = %s", (change_id,))[0]
    # As herald.record_change() writes it: the table's qualified name, its primary key.
    assert (row["table_name"], row["operation"], row["row_pk"]) == ("public.classes", "UPDATE",
                                                                     {"id": 7})  # fmt: skip
    assert row["new_row"]["seats"] == 3 and row["old_row"]["seats"] == 4

    queued = api.get(response.headers["location"]).json()
    assert queued["status"] == "queued" and queued["notifications"] == []
    assert queued["change"]["claimed_at"] is None

    run_orchestrator(pool, make_settings(api.url), RecordingPublisher())
    trace = api.get(f"/api/changes/{change_id}").json()
    assert trace["status"] == "routed"
    (note,) = trace["notifications"]
    assert note["route"] == "classes" and note["change_ids"] == [change_id]
    assert sorted(j["recipient"] for j in note["jobs"]) == ["a@example.com", "b@example.com"]
    assert {j["status"] for j in note["jobs"]} == {"pending"}
    assert note["deliveries"] == [] and note["summary"] is None
    assert "new_row" not in json.dumps(trace)  # the rows (personal data) are not in the trace


def test_a_change_no_route_takes_is_traced_with_the_reason(api: Api, pool) -> None:
    response = send(api, {"table": "audit.events", "operation": "DELETE", "old_row": {"id": 3}})
    assert response.status_code == 202, response.text
    change_id = response.json()["change_id"]
    row = api.sql("SELECT table_name, row_pk FROM herald.change_log WHERE id = %s", (change_id,))
    assert row == [{"table_name": "audit.events", "row_pk": {"id": 3}}]  # no such table: as given
    run_orchestrator(pool, make_settings(api.url), RecordingPublisher())
    trace = api.get(f"/api/changes/{change_id}").json()
    assert trace["status"] == "skipped"
    assert trace["change"]["error"] == "no matching route" and trace["notifications"] == []


def test_the_change_wakes_the_orchestrator(api: Api) -> None:
    import psycopg

    with psycopg.connect(api.url, autocommit=True) as listener:
        listener.execute("LISTEN herald_changes")
        assert send(api, CLASS_UPDATE).status_code == 202
        assert next(listener.notifies(timeout=5, stop_after=1)).channel == "herald_changes"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"operation": "INSERT", "row": {}}, 422, "table"),
        ({"table": "x; DROP TABLE y", "operation": "INSERT", "row": {}}, 422, "table"),
        ({"table": "a.b.c", "operation": "INSERT", "row": {}}, 422, "table"),
        ({"table": "1abc", "operation": "INSERT", "row": {}}, 422, "table"),
        ({"table": "classes", "operation": "UPSERT", "row": {}}, 422, "operation"),
        ({"table": "classes", "operation": "INSERT"}, 422, "needs row"),
        ({"table": "classes", "operation": "UPDATE", "row": {}}, 422, "needs old_row"),
        ({"table": "classes", "operation": "DELETE", "row": {}}, 422, "needs old_row"),
        ({"table": "classes", "operation": "INSERT", "row": [1]}, 422, "JSON object"),
        ({"table": "classes", "operation": "INSERT", "row": {}, "extra": 1}, 422, "unknown"),
        ({"table": "classes", "operation": "INSERT", "row": {"a": "nul\u0000"}}, 422, "NUL"),
        ({"table": "classes", "operation": "INSERT", "row": {"a\u0000": 1}}, 422, "NUL"),
        ([1, 2], 422, "object"),
    ],
)
def test_a_bad_change_is_refused_with_what_is_wrong(api: Api, body, status: int, says: str) -> None:
    response = send(api, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert says in response.json()["detail"]
    assert api.sql("SELECT count(*) AS n FROM herald.change_log")[0]["n"] == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"{not json", 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),  # deeper than Python's parser recurses
        (b'{"table": "classes", "operation": "INSERT", "row": {"n": NaN}}', 400),
        (b'{"table": "classes", "operation": "INSERT", "row": {"s": "\\ud800"}}', 422),
        (b'{"table": "classes", "operation": "INSERT", "row": ' + b'{"a":' * 70 + b"1"
         + b"}" * 70 + b"}", 422),  # deeper than [limits] max_change_depth (64)
        (b"\xff\xfe", 400),
    ],
)  # fmt: skip
def test_hostile_bodies_are_4xx_never_500(api: Api, raw: bytes, status: int) -> None:
    response = api.post("/api/changes", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text


def test_size_and_media_type_limits(api: Api) -> None:
    big = {"table": "classes", "operation": "INSERT", "row": {"x": "y" * 1_100_000}}
    assert send(api, big).status_code == 413
    response = api.post("/api/changes", content=b"table=classes",
                        headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert response.status_code == 415


def test_an_unknown_change_is_404(api: Api) -> None:
    assert api.get("/api/changes/99999").status_code == 404
    assert api.get("/api/changes/0").status_code == 422


def test_sync_now_sends_the_orchestrate_message(api: Api, rabbitmq_url: str) -> None:
    response = api.post("/api/orchestrate")
    assert response.status_code == 202 and response.json() == {"status": "sent"}
    probe = AmqpProbe(rabbitmq_url)
    try:
        (depth,) = probe.depths(["orchestrate"])
    finally:
        probe.close()
    assert depth.ready == 1


@dataclass
class Refusing:
    """Herald's services with a broker that refuses every message."""

    settings: Any
    pool: Any

    def publish(self, refs: Any) -> list[int]:
        raise ConnectionError("amqp://guest:secret@nowhere refused")

    def orchestrate_now(self) -> None:
        raise ConnectionError("amqp://guest:secret@nowhere refused")


def test_sync_now_answers_503_when_the_broker_refuses(api: Api) -> None:
    app = create_app(Refusing(api.app.settings, api.app.pool))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/api/orchestrate", headers=AS_OPERATOR)
    assert response.status_code == 503 and "secret" not in response.text


def test_stats_over_a_window(api: Api, seeded) -> None:
    response = api.get("/api/stats?hours=1")
    assert response.status_code == 200, response.text
    body = response.json()
    email = body["actors"]["send_email"]
    assert email["counts"]["failed"] == 1 and email["counts"]["complete"] == 1
    assert 1.9 < email["p95_processing_seconds"] < 2.1
    assert email["success_rate"] == 0.5
    assert [f["id"] for f in body["recent_failures"]] == seeded["failed"]
    assert {b["breaker"] for b in body["breakers"]} == {"ai", "smtp"}
    assert {q["queue"] for q in body["queues"]} >= {"email", "enrich", "orchestrate"}
    assert api.get("/api/stats?hours=0").status_code == 422
    assert api.get("/api/stats?hours=a").status_code == 422
