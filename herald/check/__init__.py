"""`herald check`: the configuration against the running world, one result per check.

Each check returns `CheckResult`s (name, status, detail; `herald.check.results`);
`run_checks` runs them all in the order a newcomer fixes things and never raises, so a
broken dependency is a failed line, not a traceback. The database and the routes are
checked in `herald.check.database` and `herald.check.routes`, RabbitMQ, SMTP and the AI
endpoint in `herald.check.services`; each network check is bounded by `TIMEOUT` seconds.
The CLI (`herald.cli.check`) prints; no SQL here: the stores are `herald.migrate` and
`herald.tracking`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from herald.check.database import database_checks
from herald.check.results import (
    TIMEOUT,
    CheckResult,
    fail,
    failed,
    first_line,
    ok,
    skip,
)
from herald.check.routes import check_recipients, check_templates
from herald.check.services import SERVICE_CHECKS, check_rabbitmq
from herald.config import Settings
from herald.environment import BROKER_URL, DATABASE_URL, EXAMPLES, SERVICES, missing

__all__ = ["TIMEOUT", "CheckResult", "failed", "run_checks"]


def check_environment(env: Mapping[str, str]) -> list[CheckResult]:
    """HERALD_DATABASE_URL and HERALD_BROKER_URL are set (no silent default)."""
    return [
        fail(name, f"not set (e.g. {name}={EXAMPLES[name]})")
        if name in missing(env, [name])
        else ok(name, "set")
        for name in SERVICES
    ]


def run_checks(
    settings: Settings,
    env: Mapping[str, str],
    *,
    services: Sequence[Callable[[Settings], CheckResult]] = SERVICE_CHECKS,
) -> list[CheckResult]:
    """Every check, in the order a newcomer fixes things; never raises. `services`: the
    checks of RabbitMQ, SMTP and the AI endpoint (`herald.check.services`)."""
    results = check_environment(env)
    unset = set(missing(env, SERVICES))

    def local(s: Settings) -> list[CheckResult]:
        return [check_recipients(s), check_templates(s)]

    def database(s: Settings) -> list[CheckResult]:
        if DATABASE_URL in unset:
            return [skip("database", f"{DATABASE_URL} not set")]
        return database_checks(s)

    for step in (database, local):
        try:
            results += step(settings)
        except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed line
            results.append(fail("check", f"{type(exc).__name__}: {first_line(exc)}"))
    for service in services:
        if service is check_rabbitmq and BROKER_URL in unset:
            results.append(skip("rabbitmq", f"{BROKER_URL} not set"))
            continue
        try:
            results.append(service(settings))
        except Exception as exc:  # noqa: BLE001
            name = service.__name__.removeprefix("check_")
            results.append(fail(name, f"{type(exc).__name__}: {first_line(exc)}"))
    return results
