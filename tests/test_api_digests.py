"""`/api/recipients` and `/api/digest-schedules` on real PostgreSQL and RabbitMQ: viewers
read, operators write, and an unknown timezone, route or a bad address is a clear 400."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from herald.bootstrap import bootstrap
from herald.testing import FakeMailer, FakeSummariser
from herald.web.app import create_app
from tests.api_fixtures import AS_OPERATOR, AS_VIEWER, TOKENS, Api
from tests.helpers import ROUTES, make_settings

pytestmark = pytest.mark.integration

RAW = {
    **ROUTES,
    "routes": [
        *ROUTES["routes"],
        {"name": "class-digest", "table": "classes", "recipients": ["ops@example.com"],
         "mode": "digest", "digest": "daily 09:00", "digest_timezone": "Europe/London"},
    ],
}  # fmt: skip


@pytest.fixture
def api(herald_db: str, pool: ConnectionPool, rabbitmq_url: str) -> Iterator[Api]:
    settings = make_settings(herald_db, RAW, HERALD_BROKER_URL=rabbitmq_url,
                             HERALD_API_TOKENS=TOKENS)  # fmt: skip
    app = bootstrap(settings, pool=pool, mailer=FakeMailer(), summariser=FakeSummariser())
    with TestClient(create_app(app), raise_server_exceptions=False) as client:
        yield Api(client, app, herald_db)
    app.publisher.close()
    app.broker.close()


def patch(api: Api, path: str, body: dict, token: dict[str, str] = AS_OPERATOR):
    return api.client.patch(path, json=body, headers=token)


def test_a_recipient_is_created_read_changed_and_removed(api):
    made = api.post("/api/recipients", json={"address": "Ann Lee <Ann@Example.org>",
                                             "timezone": "Asia/Kathmandu"})  # fmt: skip
    assert made.status_code == 200, made.text
    assert made.json()["address"] == "ann@example.org"
    assert made.json()["timezone"] == "Asia/Kathmandu" and made.json()["mutes"] == []

    changed = patch(api, "/api/recipients/ann@example.org", {"display_name": "Ann"})
    assert changed.json()["display_name"] == "Ann"
    assert changed.json()["timezone"] == "Asia/Kathmandu"  # left out: kept
    assert api.get("/api/recipients/ANN@example.org").json()["display_name"] == "Ann"

    listed = api.get("/api/recipients").json()
    assert [r["address"] for r in listed["recipients"]] == ["ann@example.org"]
    assert api.delete("/api/recipients/ann@example.org").status_code == 204
    assert api.get("/api/recipients/ann@example.org").status_code == 404


def test_mute_and_unmute(api):
    until = "2099-01-01T00:00:00Z"
    muted = api.post("/api/recipients/bob@example.org/mute", json={"route": "classes",
                                                                   "until": until})  # fmt: skip
    assert muted.status_code == 200, muted.text
    assert muted.json()["mutes"][0]["route"] == "classes"
    assert api.get("/api/recipients?muted=true").json()["recipients"][0]["address"] == (
        "bob@example.org")  # fmt: skip
    lifted = api.post("/api/recipients/bob@example.org/unmute", json={})
    assert lifted.json() == {"address": "bob@example.org", "unmuted": ["classes"]}
    again = api.post("/api/recipients/bob@example.org/unmute", json={})
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "says"),
    [
        ("/api/recipients", {"address": "ann@example.org", "timezone": "Mars/Olympus"},
         "unknown timezone 'Mars/Olympus'"),
        ("/api/recipients", {"address": "a@example.org, b@example.org"},
         "not exactly one email address"),
        ("/api/recipients/ann@example.org/mute", {"route": "nope"}, "unknown route 'nope'"),
        ("/api/digest-schedules", {"route": "classes", "recipient": "ann@example.org"},
         "not in digest mode"),
        ("/api/digest-schedules", {"route": "class-digest", "recipient": "ann@example.org",
                                   "schedule": "hourly 09:00"}, "daily 09:00"),
        ("/api/digest-schedules", {"route": "class-digest", "recipient": "ann@example.org",
                                   "timezone": "Europe/Atlantis"}, "unknown timezone"),
        ("/api/digest-schedules", {"route": "class-digest", "recipient": "ann@example.org",
                                   "operations": ["TRUNCATE"]}, "operations must be"),
    ],
)  # fmt: skip
def test_what_herald_cannot_use_is_a_clear_400(api, path, body, says):
    answer = api.post(path, json=body)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert says in answer.json()["detail"]


def test_a_viewer_reads_and_an_operator_writes(api):
    assert api.get("/api/recipients", token=AS_VIEWER).status_code == 200
    assert api.get("/api/digest-schedules", token=AS_VIEWER).status_code == 200
    assert api.get("/api/recipients", token=None).status_code == 401
    refused = api.post("/api/recipients", json={"address": "a@example.org"}, token=AS_VIEWER)
    assert refused.status_code == 403
    refused = api.post("/api/digest-schedules", token=AS_VIEWER,
                       json={"route": "class-digest", "recipient": "a@example.org"})  # fmt: skip
    assert refused.status_code == 403


def test_a_digest_schedule_is_posted_patched_and_deleted(api):
    made = api.post("/api/digest-schedules", json={
        "route": "class-digest", "recipient": "Ann <ann@example.org>",
        "schedule": "monthly 31 07:15", "timezone": "Australia/Lord_Howe",
        "tables": ["classes"]})  # fmt: skip
    assert made.status_code == 201, made.text
    got = made.json()
    assert made.headers["location"] == f"/api/digest-schedules/{got['id']}"
    assert (got["schedule"], got["timezone"], got["tables"]) == (
        "monthly 31 07:15", "Australia/Lord_Howe", ["classes"])  # fmt: skip
    due = datetime.fromisoformat(got["next_due_at"])
    assert due > datetime.now(UTC)

    moved = patch(api, f"/api/digest-schedules/{got['id']}", {"schedule": "weekly sun 06:00"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["schedule"] == "weekly sun 06:00"
    assert moved.json()["next_due_at"] != got["next_due_at"]  # computed again
    assert moved.json()["tables"] == ["classes"]  # left out: kept
    paused = patch(api, f"/api/digest-schedules/{got['id']}", {"paused": True})
    assert paused.json()["paused"] is True

    listed = api.get("/api/digest-schedules?route=class-digest&recipient=ANN@example.org").json()
    assert [s["id"] for s in listed["schedules"]] == [got["id"]]

    reset = api.delete(f"/api/digest-schedules/{got['id']}")
    assert reset.status_code == 200
    assert (reset.json()["schedule"], reset.json()["timezone"], reset.json()["paused"]) == (
        "daily 09:00", "Europe/London", False)  # fmt: skip
    assert api.get("/api/digest-schedules/999999").status_code == 404
    assert patch(api, "/api/digest-schedules/999999", {"paused": True}).status_code == 404


def test_the_openapi_document_lists_the_new_routes_and_not_the_unsubscribe_page(api):
    paths = api.get("/openapi.json", token=None).json()["paths"]
    assert {"/api/recipients", "/api/recipients/{address}", "/api/digest-schedules",
            "/api/digest-schedules/{schedule_id}"} <= set(paths)  # fmt: skip
    assert not any(p.startswith("/unsubscribe") for p in paths)
