"""`/livez`, `/readyz`, `/health`: for a load balancer, an orchestrator, and a person.

Liveness checks nothing outside the process (a restart cures nothing else). Readiness is
PostgreSQL reachable with every migration applied, and RabbitMQ reachable: 200 or 503
(with several RabbitMQ nodes, each is reported: one down is a warning, 200).
`/health` is `application/health+json` (draft-inadarei-api-health-check): `status` pass,
warn or fail and a `checks` map; a dependency down is `fail` (503); an open circuit
breaker, a backlog or a late orchestrator is `warn` (200).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg_pool
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from actors.quorum import LEVELS
from herald import sql
from herald.ledger import ACTOR_QUEUES
from herald.web.broker import BrokerDown, BrokerProbe
from herald.web.models import Health, Liveness
from herald.web.nodes import node_statuses
from herald.web.services import WebServices
from monitoring import jobs_api
from monitoring.metrics import KNOWN_ACTORS

HEALTH_JSON = "application/health+json"


class HealthResponse(JSONResponse):
    media_type = HEALTH_JSON


#: /readyz and /health answer 503 with the same document when a dependency is down.
DOWN: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "a dependency is down",
        "content": {HEALTH_JSON: {"schema": Health.model_json_schema()}},
    }
}
#: Seconds to wait for a pooled connection before PostgreSQL counts as down.
DB_TIMEOUT_SECONDS = 2.0

#: Past these, /health says `warn`.
WARN_PENDING = 10_000
WARN_OLDEST_PENDING_SECONDS = 300.0
WARN_UNCLAIMED = 1_000
WARN_OLDEST_UNCLAIMED_SECONDS = 180.0
WARN_ORCHESTRATOR_SILENT_SECONDS = 300.0


def queue_names(queue_type: str = "classic") -> tuple[str, ...]:
    """Every queue Herald's actors use, with Dramatiq's delay (.DQ) and dead-letter (.XQ)
    ones; on quorum queues also each priority level's queue and its .DQ (`email.urgent`,
    `email.low`: actors/quorum.py), which share the logical queue's .XQ."""
    names: list[str] = []
    for queue in sorted(set(KNOWN_ACTORS.values())):
        split = queue_type == "quorum" and queue in ACTOR_QUEUES.values()
        for _, suffix in LEVELS if split else (("normal", ""),):
            names += [f"{queue}{suffix}", f"{queue}{suffix}.DQ"]
        names.append(f"{queue}.XQ")
    return tuple(names)


router = APIRouter(tags=["health"])


def _services(request: Request) -> WebServices:
    services: WebServices = request.app.state.services
    return services


def _probe(request: Request) -> BrokerProbe:
    probe: BrokerProbe = request.app.state.broker
    return probe


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _check(status: str, value: Any = None, unit: str | None = None, **more: Any) -> dict[str, Any]:
    check: dict[str, Any] = {"status": status, "time": _now()}
    if value is not None:
        check["observedValue"] = value
    if unit:
        check["observedUnit"] = unit
    check.update(more)
    return check


def _worst(statuses: list[str]) -> str:
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, round((time.perf_counter() - started) * 1000, 3)


@functools.cache
def expected_migrations() -> list[str]:
    """The migrations this code expects, read once (readiness must stay cheap)."""
    return [name for name, _ in sql.migrations()]


def database_checks(
    services: WebServices, *, figures: bool
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """PostgreSQL's checks (reachable, migrations) and, when asked and reachable, the
    ledger's figures."""
    expected = expected_migrations()

    def read() -> tuple[list[str], dict[str, Any]]:
        with services.pool.connection(timeout=DB_TIMEOUT_SECONDS) as conn:
            missing = jobs_api.missing_migrations(conn, expected)
            return missing, jobs_api.health_figures(conn) if figures else {}

    try:
        (missing, found), ms = _timed(read)
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        down = _check("fail", output=f"PostgreSQL unreachable ({type(exc).__name__})",
                      componentType="datastore")  # fmt: skip
        return {"postgresql:responseTime": [down]}, {}
    note = {"output": f"not applied: {', '.join(missing)} (run herald db upgrade)"}
    checks = {
        "postgresql:responseTime": [_check("pass", ms, "ms", componentType="datastore")],
        "postgresql:migrations": [
            _check(
                "fail" if missing else "pass",
                missing[0] if missing else expected[-1],
                componentType="datastore",
                **(note if missing else {}),
            )
        ],  # fmt: skip
    }
    return checks, found


def broker_checks(
    probe: BrokerProbe, *, depths: bool, queue_type: str = "classic"
) -> dict[str, list[dict[str, Any]]]:
    try:
        _, ms = _timed(probe.ping)
        queues = probe.depths(queue_names(queue_type)) if depths else []
    except BrokerDown as exc:
        return {
            "rabbitmq:responseTime": [
                _check("fail", output=f"RabbitMQ unreachable ({exc})", componentType="component")
            ]
        }
    checks = {"rabbitmq:responseTime": [_check("pass", ms, "ms", componentType="component")]}
    if depths:
        checks["rabbitmq:messagesReady"] = [
            _check("pass", q.ready, componentId=q.queue, consumers=q.consumers, exists=q.exists)
            for q in queues
        ]
    return checks


def node_checks(broker_url: str) -> dict[str, list[dict[str, Any]]]:
    """Each node of a `;`-separated HERALD_BROKER_URL: one down while another answers is a
    warning (Herald works on), all down a failure (herald/web/nodes.py)."""
    statuses = node_statuses(broker_url)
    if not statuses:
        return {}
    down = "warn" if any(s.up for s in statuses) else "fail"
    entries = [
        _check("pass", s.ms, "ms", componentId=s.address, componentType="component")
        if s.up
        else _check(
            down,
            componentId=s.address,
            componentType="component",
            output=f"unreachable ({s.error})",
        )
        for s in statuses
    ]
    return {"rabbitmq:node": entries}


def ledger_checks(figures: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    if not figures:
        return {}
    pending, oldest = figures["pending"], figures["oldest_pending_seconds"]
    unclaimed, oldest_unclaimed = figures["unclaimed"], figures["oldest_unclaimed_seconds"]
    last = figures["last_orchestrator_success"]
    silent = (figures["now"] - last).total_seconds() if last else None
    return {
        "circuitBreaker:state": [
            _check(
                "warn" if b["state"] != "closed" else "pass",
                b["state"],
                componentId=b["breaker"],
                consecutiveFailures=b["consecutive_failures"],
            )
            for b in figures["breakers"]
        ],  # fmt: skip
        "jobs:pending": [_check("warn" if pending > WARN_PENDING else "pass", pending)],
        "jobs:running": [_check("pass", figures["running"])],
        "jobs:failed": [_check("pass", figures["failed"])],
        "jobs:oldestPendingAge": [
            _check(
                "warn" if (oldest or 0) > WARN_OLDEST_PENDING_SECONDS else "pass",
                round(oldest or 0.0, 3),
                "s",
            )
        ],  # fmt: skip
        "changes:unclaimed": [
            _check(
                "warn"
                if unclaimed > WARN_UNCLAIMED
                or (oldest_unclaimed or 0) > WARN_OLDEST_UNCLAIMED_SECONDS
                else "pass",
                unclaimed,
                oldestSeconds=round(oldest_unclaimed or 0.0, 3),
            )
        ],  # fmt: skip
        "orchestrator:lastSuccess": [
            _check(
                "warn" if silent is None or silent > WARN_ORCHESTRATOR_SILENT_SECONDS else "pass",
                last.isoformat() if last else None,
                secondsAgo=round(silent, 3) if silent is not None else None,
            )
        ],  # fmt: skip
    }


def health_document(services: WebServices, probe: BrokerProbe) -> dict[str, Any]:
    db, figures = database_checks(services, figures=True)
    depths = broker_checks(probe, depths=True, queue_type=services.settings.broker.queue_type)
    checks = {**db, **depths, **ledger_checks(figures),
              **node_checks(services.settings.broker_url)}  # fmt: skip
    status = _worst([c["status"] for entries in checks.values() for c in entries])
    return {
        "status": status,
        "serviceId": "herald",
        "description": "Herald: PostgreSQL changes become emails",
        "checks": checks,
    }


@router.get("/livez", response_model=Liveness, summary="The process answers (nothing else checked)")
def livez() -> dict[str, str]:
    return {"status": "pass"}


@router.get(
    "/readyz",
    response_model=Health,
    response_class=HealthResponse,
    responses=DOWN,
    summary="PostgreSQL (schema current) and RabbitMQ reachable",
)
def readyz(request: Request) -> JSONResponse:
    db, _ = database_checks(_services(request), figures=False)
    checks = {**db, **broker_checks(_probe(request), depths=False),
              **node_checks(_services(request).settings.broker_url)}  # fmt: skip
    status = _worst([c["status"] for entries in checks.values() for c in entries])
    body = {"status": status, "checks": checks}
    return HealthResponse(body, status_code=503 if status == "fail" else 200)


@router.get(
    "/health",
    response_model=Health,
    response_class=HealthResponse,
    responses=DOWN,
    summary="Dependencies, breakers, queue depths, backlog (application/health+json)",
)
def health(request: Request) -> JSONResponse:
    body = health_document(_services(request), _probe(request))
    status = 503 if body["status"] == "fail" else 200
    return HealthResponse(body, status_code=status)
