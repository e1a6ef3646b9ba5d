"""`herald check`'s routes: each one's table exists and is tracked, it can match a change
at all, it has recipients; each tracked table has a route; recipients and templates.
Pure functions over the settings and the tables' names (read by `herald.check.database`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from herald.check.results import CheckResult, fail, first_line, ok, warn
from herald.config import Route, Settings


def never_matching(routes: Sequence[Route], tracked: Sequence[str]) -> dict[str, str]:
    """Routes that can never take a change, by name, with why: no operations, or every
    change they match on a tracked table is taken by an earlier route."""
    from orchestrator.coverage import covers
    from orchestrator.routing import route as first_route

    why: dict[str, str] = {}
    for index, r in enumerate(routes):
        if not r.operations:
            why[r.name] = "operations is empty: it matches no change"
            continue
        pairs = [(t, op) for t in tracked if covers(r, t) for op in r.operations]
        earlier = routes[:index]
        takers = {_taker(first_route(_Change(t, op), earlier)) for t, op in pairs}
        if pairs and None not in takers:
            names = ", ".join(repr(n) for n in sorted(n for n in takers if n))
            why[r.name] = f"every change it matches goes to an earlier route ({names})"
    return why


@dataclass(frozen=True)
class _Change:
    table_name: str
    operation: str


def _taker(route: Route | None) -> str | None:
    return route.name if route is not None else None


def check_routes(
    settings: Settings, tracked: Sequence[str], tables: Sequence[str]
) -> list[CheckResult]:
    """Each route's table exists and is tracked, the route can match, it has recipients;
    each tracked table has a route."""
    from orchestrator.coverage import find_gaps

    dead = never_matching(settings.routes, tracked)
    results = [_route_result(r, tracked, tables, dead.get(r.name)) for r in settings.routes]
    for table in find_gaps(settings.routes, tracked).unrouted_tables:
        results.append(warn(f"table {table}", "tracked, but no route: its changes are skipped"))
    if not tracked:
        results.append(warn("tracked tables", "none: run `herald track TABLE`"))
    return results


def _route_result(
    r: Route, tracked: Sequence[str], tables: Sequence[str], dead: str | None
) -> CheckResult:
    from orchestrator.coverage import names_table

    name = f"route {r.name}"
    matched = [t for t in tracked if names_table(r, t)]
    if r.table != "*" and not matched:
        if any(names_table(r, t) for t in tables):
            return fail(
                name, f"table {r.table!r} exists but is not tracked: run `herald track {r.table}`"
            )
        return fail(name, f"table {r.table!r} does not exist")
    if dead is not None:
        return fail(name, f"can never match: {dead}")
    if not r.recipients:
        return warn(name, "no recipients: its changes are skipped (and counted)")
    on = "any tracked table" if r.table == "*" else ", ".join(matched)
    return ok(name, f"{', '.join(r.operations)} on {on} -> {len(r.recipients)} recipient(s)")


def check_recipients(settings: Settings) -> CheckResult:
    """Every recipient address parses (settings refuse a bad one; this counts them)."""
    addresses = {a for r in settings.routes for a in r.recipients}
    if not settings.routes:
        return warn("recipients", "no routes: every change is skipped")
    return ok("recipients", f"{len(addresses)} address(es) on {len(settings.routes)} route(s)")


def check_templates(settings: Settings) -> CheckResult:
    """Every route's template renders sample changes; subjects compile."""
    from herald.config import DEFAULT_TEMPLATE
    from herald.email.render import check_templates as render_samples
    from herald.templating import check_route_templates

    names = sorted({r.template for r in settings.routes} | {DEFAULT_TEMPLATE})
    try:
        check_route_templates(settings)
        render_samples(names, settings.mail_templates_dir)
    except Exception as exc:  # noqa: BLE001 - any template failure is one failed line
        return fail("templates", first_line(exc))
    where = settings.mail_templates_dir or "packaged"
    return ok("templates", f"{', '.join(names)} ({where}) render sample changes")
