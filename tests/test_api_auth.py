"""Who may do what: Bearer tokens by role, 401 and 403, tokens kept out of logs and pages,
and `herald serve` refusing to run open to the network."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from herald.config import ConfigError, parse_api_tokens
from herald.web.app import create_app
from herald.web.serve import check_can_serve
from tests.api_fixtures import (  # noqa: F401 - fixtures
    AS_OPERATOR,
    AS_VIEWER,
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    Api,
    api,
    herald_app,
    seeded,
)

pytestmark = pytest.mark.integration

READS = [("GET", "/api/jobs"), ("GET", "/api/jobs/{job_id}"),
         ("GET", "/api/changes/{change_id}"), ("GET", "/api/stats")]  # fmt: skip
WRITES = [("POST", "/api/jobs/{job_id}/retry"), ("DELETE", "/api/jobs/{job_id}"),
          ("POST", "/api/jobs/retry"), ("POST", "/api/changes"),
          ("POST", "/api/orchestrate")]  # fmt: skip
OPEN = [("GET", "/livez"), ("GET", "/readyz"), ("GET", "/health")]


def concrete(path: str) -> str:
    return path.replace("{job_id}", "1").replace("{change_id}", "1")


def call(api: Api, method: str, path: str, headers: dict[str, str]):
    change = {"table": "classes", "operation": "INSERT", "row": {"id": 1}}
    if path == "/api/jobs/retry":
        path += "?status=failed"
    return api.client.request(method, concrete(path), headers=headers,
                              json=change if path == "/api/changes" else None)  # fmt: skip


def test_every_api_route_needs_a_token(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert set(READS + WRITES + OPEN) <= routes
    for method, path in sorted(routes - set(OPEN)):
        concrete_path = re.sub(r"\{[^}]+\}", "1", path)
        response = api.client.request(method, concrete_path)
        assert response.status_code == 401, (method, path, response.status_code)


@pytest.mark.parametrize(("method", "path"), READS + WRITES)
def test_no_token_or_a_wrong_one_is_401(api: Api, method: str, path: str) -> None:
    wrong = [{}, {"Authorization": "Bearer nope-nope-nope-nope"},
             {"Authorization": f"Basic {VIEWER_TOKEN}"}, {"Authorization": "Bearer "}]  # fmt: skip
    for headers in wrong:
        response = call(api, method, path, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_viewer_may_not_write(api: Api, seeded, method: str, path: str) -> None:
    response = call(api, method, path, AS_VIEWER)
    assert response.status_code == 403, response.text
    assert "viewer" in response.json()["detail"]


@pytest.mark.parametrize(("method", "path"), READS)
def test_both_roles_may_read(api: Api, seeded, method: str, path: str) -> None:
    for headers in (AS_VIEWER, AS_OPERATOR):
        assert call(api, method, path, headers).status_code == 200


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_an_operator_may_write(api: Api, seeded, method: str, path: str) -> None:
    if method == "POST":  # retry needs a failed job 1; cancel (DELETE) a pending one
        api.sql("UPDATE herald.jobs SET status = 'failed' WHERE id = 1")
    response = call(api, method, path, AS_OPERATOR)
    assert response.status_code in (200, 202), response.text


def test_health_endpoints_need_no_token(api: Api) -> None:
    for method, path in OPEN:
        assert api.client.request(method, path).status_code == 200


def test_tokens_never_reach_the_logs_or_the_answers(api: Api, seeded, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    for headers in (AS_VIEWER, AS_OPERATOR, {"Authorization": "Bearer wrong-token-123456789"}):
        for method, path in READS + WRITES:
            response = call(api, method, path, headers)
            for token in (VIEWER_TOKEN, OPERATOR_TOKEN, "wrong-token-123456789"):
                assert token not in response.text
    for token in (VIEWER_TOKEN, OPERATOR_TOKEN, "wrong-token-123456789"):
        assert token not in caplog.text
    assert VIEWER_TOKEN not in repr(api.app.settings)


def test_an_unexpected_error_is_a_500_problem_without_details(api: Api, seeded) -> None:
    class Broken:
        settings, pool = api.app.settings, api.app.pool

        def publish(self, refs):
            raise RuntimeError("internal detail: password=hunter2")

        def orchestrate_now(self) -> None: ...

    with TestClient(create_app(Broken()), raise_server_exceptions=False) as client:
        response = client.post(f"/api/jobs/{seeded['failed'][0]}/retry", headers=AS_OPERATOR)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert response.json()["title"] == "Internal server error"


def test_unknown_paths_and_methods_are_problems(api: Api) -> None:
    assert api.get("/api/nothing").json()["status"] == 404
    response = api.client.put("/api/jobs", headers=AS_OPERATOR)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


def test_token_configuration_is_checked_without_echoing_tokens() -> None:
    assert [t.role for t in parse_api_tokens("viewer:aaaaaaaaaaaaaaaa, operator:bbbbbbbbbbbbbbbb,"
                                             "viewer:cccccccccccccccc")] == [
        "viewer", "operator", "viewer"]  # fmt: skip
    for bad in ("admin:aaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaa", "viewer:tiny9",
                "viewer:aaaaaaaaaaaaaaaa,operator:aaaaaaaaaaaaaaaa"):  # fmt: skip
        with pytest.raises(ConfigError) as error:
            parse_api_tokens(bad)
        assert "aaaaaaaaaaaaaaaa" not in str(error.value) and "tiny9" not in str(error.value)


def test_serve_refuses_to_start_open_to_the_network(api: Api) -> None:
    from dataclasses import replace

    no_tokens = replace(api.app, settings=replace(api.app.settings, api_tokens=()))

    with pytest.raises(ConfigError, match="HERALD_API_TOKENS"):
        check_can_serve(no_tokens, "127.0.0.1", insecure_no_auth=False)
    with pytest.raises(ConfigError, match="loopback"):
        check_can_serve(no_tokens, "0.0.0.0", insecure_no_auth=True)
    check_can_serve(no_tokens, "127.0.0.1", insecure_no_auth=True)
    check_can_serve(no_tokens, "::1", insecure_no_auth=True)
    check_can_serve(api.app, "0.0.0.0", insecure_no_auth=False)  # tokens: any address


def test_insecure_no_auth_lets_everyone_operate(api: Api, seeded) -> None:
    with TestClient(create_app(api.app, insecure_no_auth=True)) as client:
        assert client.get("/api/jobs").status_code == 200
        assert client.post("/api/orchestrate").status_code == 202


def test_the_openapi_document_and_docs_are_served(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert spec["info"]["title"] == "Herald"
    assert api.client.get("/docs").status_code == 200
    assert re.search(r"Bearer", spec["info"]["description"])
