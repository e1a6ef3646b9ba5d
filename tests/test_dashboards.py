"""Grafana dashboards and provisioning, checked without a Grafana.

Static: the JSON loads, panel ids are unique, every datasource is the provisioned uid,
no ``${DS_...}`` inputs, every ``herald_*`` metric used is declared in
``monitoring/metrics.py``, the committed JSON matches ``grafana/build_dashboards.py``,
and the provisioning files have the keys Grafana requires.

Live: a real Prometheus scrapes exposition servers built from ``monitoring/metrics.py``
(worker side and exporter side, every label set pre-initialised, a few non-zero
values) and runs every panel query, every Prometheus alert and every Grafana-managed
rule query: each must parse, and each headline (stat) panel must return data.
After a real Herald run the same ``check_dashboard_queries`` can be pointed at a real
worker and exporter instead of the fake servers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from monitoring import metrics
from tests.services import ServiceUnavailable, free_port, require_service
from tests.services.prometheus_server import (
    ALERTS_FILE,
    DASHBOARD_DIR,
    GRAFANA_ALERTS_FILE,
    PrometheusServer,
    check_dashboard_queries,
    dashboard_queries,
    iter_panels,
)

REPO = Path(__file__).resolve().parents[1]
PROVISIONING = REPO / "grafana" / "provisioning"
DATASOURCE_UID = "herald-prometheus"
HEADLINES = {
    "Pending",
    "Retrying / min",
    "Dead (failed)",
    "Completed 1h",
    "Failed 1h",
    "Failure % 1h",
    "Workers up",
    "Orchestrator last success",
}


def dashboards() -> list[tuple[Path, dict]]:
    paths = sorted(DASHBOARD_DIR.glob("*.json"))
    assert paths, f"no dashboards in {DASHBOARD_DIR}"
    return [(path, json.loads(path.read_text())) for path in paths]


def walk(node: object) -> Iterator[tuple[str, object]]:
    """Every (key, value) pair anywhere in a JSON/YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


# ---------------------------------------------------------------------------- static


def test_dashboards_are_generated_from_the_builder() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "grafana" / "build_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_json_is_self_contained() -> None:
    uids = set()
    for path, dashboard in dashboards():
        text = path.read_text()
        assert "${DS_" not in text, f"{path.name}: unresolved ${{DS_...}} input"
        assert "__inputs" not in dashboard, f"{path.name}: __inputs is for import, not provisioning"
        assert dashboard.get("uid") and dashboard["uid"] not in uids, path.name
        uids.add(dashboard["uid"])
        ids = [panel["id"] for panel in iter_panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for key, value in walk(dashboard):
            if key == "datasource" and isinstance(value, dict):
                assert value.get("uid") == DATASOURCE_UID, f"{path.name}: datasource {value}"
            if key == "datasource" and isinstance(value, str):
                pytest.fail(f"{path.name}: datasource by name {value!r}, use the uid")
        for panel in iter_panels(dashboard):
            if panel.get("type") == "row":
                continue
            assert panel.get("datasource", {}).get("uid") == DATASOURCE_UID, panel["title"]
            assert panel.get("targets"), f"{path.name}: panel {panel['title']!r} has no query"
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, f"{panel['title']!r} overflows the grid"


def test_overview_has_the_headline_panels() -> None:
    overview = json.loads((DASHBOARD_DIR / "herald-overview.json").read_text())
    stats = {p["title"] for p in iter_panels(overview) if p.get("type") == "stat"}
    assert stats >= HEADLINES, f"missing headline panels: {HEADLINES - stats}"
    titles = " ".join(p.get("title", "") for p in iter_panels(overview)).lower()
    for topic in ("p50", "queue depth", "oldest", "ai tokens", "breaker", "unclaimed"):
        assert topic in titles, f"overview lacks a {topic!r} panel"


def test_queries_use_only_declared_herald_metrics() -> None:
    declared = set(metrics.ALL_METRICS)
    histograms = {n for n, kind in metrics.TYPES.items() if kind == "histogram"}
    declared |= {f"{n}{suffix}" for n in histograms for suffix in ("_bucket", "_sum", "_count")}
    exprs = [expr for _w, _t, expr, _h in dashboard_queries()]
    exprs += [
        rule["expr"]
        for g in yaml.safe_load(ALERTS_FILE.read_text())["groups"]
        for rule in g["rules"]
    ]
    used = {name for expr in exprs for name in re.findall(r"\bherald_[a-z_]+\b", expr)}
    assert used, "no herald_* metric found in any query"
    assert used <= declared, f"undeclared metrics: {sorted(used - declared)}"
    # Per-queue RabbitMQ figures only exist on /metrics/detailed (rabbitmq_detailed_*);
    # the aggregated rabbitmq_queue_* have no queue label, a filter on it never matches.
    for expr in exprs:
        assert not re.search(r"rabbitmq_queue_\w+\{[^}]*queue", expr), expr


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())
    assert doc["apiVersion"] == 1
    by_uid = {ds["uid"]: ds for ds in doc["datasources"]}
    prometheus = by_uid[DATASOURCE_UID]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    for ds in doc["datasources"]:
        assert {"name", "type", "url", "uid"} <= ds.keys(), ds


def test_dashboard_provider_points_at_the_mounted_directory() -> None:
    doc = yaml.safe_load((PROVISIONING / "dashboards" / "herald.yml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(
        m.split(":")[:2] == ["./grafana/dashboards", "/var/lib/grafana/dashboards"] for m in mounts
    ), mounts


def test_grafana_alert_rules_mirror_the_critical_prometheus_alerts() -> None:
    doc = yaml.safe_load(GRAFANA_ALERTS_FILE.read_text())
    assert doc["apiVersion"] == 1
    titles = set()
    uids = set()
    for group in doc["groups"]:
        assert {"name", "folder", "interval", "rules"} <= group.keys()
        for rule in group["rules"]:
            assert {"uid", "title", "condition", "data", "for"} <= rule.keys(), rule.get("title")
            assert rule["uid"] not in uids and len(rule["uid"]) <= 40
            uids.add(rule["uid"])
            titles.add(rule["title"])
            steps = {step["refId"]: step for step in rule["data"]}
            assert rule["condition"] in steps
            for step in rule["data"]:
                assert {"refId", "datasourceUid", "model", "relativeTimeRange"} <= step.keys()
                assert step["datasourceUid"] in (DATASOURCE_UID, "__expr__")
            queries = [s for s in rule["data"] if s["datasourceUid"] == DATASOURCE_UID]
            assert queries and all(s["model"].get("expr") for s in queries)
            kinds = {s["model"]["type"] for s in rule["data"] if s["datasourceUid"] == "__expr__"}
            assert {"reduce", "threshold"} <= kinds, rule["title"]
            assert steps[rule["condition"]]["model"]["type"] == "threshold"
            annotations = rule.get("annotations", {})
            assert {"summary", "description", "runbook_url"} <= annotations.keys()
            assert rule["labels"]["severity"] == "critical"
    critical = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS_FILE.read_text())["groups"]
        for rule in group["rules"]
        if rule["labels"]["severity"] == "critical"
    }
    assert titles == critical


# ------------------------------------------------------------------------------ live


@pytest.fixture(scope="module")
def fake_herald() -> Iterator[dict[str, list[str]]]:
    """A worker, an exporter and an API endpoint, built from monitoring/metrics.py."""
    worker_registry = CollectorRegistry()
    worker = metrics.create_worker_metrics(worker_registry)
    metrics.init_worker_labels(worker)
    worker.completed.labels(actor="send_email", queue="email").inc(12)
    worker.completed.labels(actor="enrich", queue="enrich").inc(10)
    worker.failed.labels(actor="send_email", queue="email").inc(2)
    worker.retried.labels(actor="enrich", queue="enrich").inc(3)
    for seconds in (0.004, 0.2, 1.5, 42.0):
        worker.duration.labels(actor="enrich", queue="enrich").observe(seconds)
    worker.running.labels(actor="send_email", queue="email").set(1)
    worker.deliveries.labels(status="sent").inc(12)
    worker.ai_tokens.labels(kind="prompt").inc(2400)
    worker.ai_tokens.labels(kind="completion").inc(600)

    exporter_registry = CollectorRegistry()
    exporter_registry.register(
        metrics.SnapshotCollector(
            metrics.ExporterSnapshot(
                pending={"send_email": 4},
                jobs={("send_email", "complete"): 12, ("send_email", "failed"): 2},
                oldest_pending_age={"send_email": 3.5},
                changes_unclaimed=7,
                orchestrator_last_success=time.time(),
                breakers_open={"ai": True},
                scrape_duration=0.01,
            )
        )
    )
    api_registry = CollectorRegistry()  # `herald serve`'s own /metrics
    api = metrics.create_api_metrics(api_registry)
    metrics.init_api_labels(api, [("GET", "/api/jobs"), ("GET", "/readyz")])
    api.requests.labels(method="GET", route="/api/jobs", status="2xx").inc(3)
    api.duration.labels(method="GET", route="/api/jobs").observe(0.004)
    servers = []
    targets: dict[str, list[str]] = {}
    for job, registry in (
        ("herald-workers", worker_registry),
        ("herald-exporter", exporter_registry),
        ("herald-api", api_registry),
    ):
        port = free_port()
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        servers.append(server)
        targets[job] = [f"127.0.0.1:{port}"]
    yield targets
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def prometheus(fake_herald: dict[str, list[str]]) -> Iterator[PrometheusServer]:
    try:
        prom = PrometheusServer(jobs=fake_herald, scrape_interval="1s", rule_files=[ALERTS_FILE])
    except ServiceUnavailable as error:
        require_service("prometheus", str(error))
    try:
        prom.wait_for_scrape(scrapes=3)
        yield prom
    finally:
        prom.stop()


def test_every_known_series_exists_from_the_first_scrape(prometheus: PrometheusServer) -> None:
    for name in metrics.ALL_METRICS:
        probe = f"{name}_count" if metrics.TYPES[name] == "histogram" else name
        result = prometheus.query(probe)["data"]["result"]
        assert result, f"{probe} absent"
        if "actor" in metrics.LABELS[name]:
            actors = {series["metric"]["actor"] for series in result}
            assert actors >= set(metrics.KNOWN_ACTORS), f"{probe}: only {actors}"
    statuses = prometheus.query('herald_jobs{actor="enrich"}')["data"]["result"]
    assert {s["metric"]["status"] for s in statuses} == set(metrics.JOB_STATUSES)


def test_every_dashboard_and_alert_query_runs(prometheus: PrometheusServer) -> None:
    problems = check_dashboard_queries(prometheus, headline_must_have_data=True)
    assert not problems, "\n".join(problems)


def test_alert_rules_load_and_evaluate_in_prometheus(prometheus: PrometheusServer) -> None:
    rules = prometheus.wait_for_rules()
    names = {rule["name"] for rule in rules}
    expected = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS_FILE.read_text())["groups"]
        for rule in group["rules"]
    }
    assert names == expected
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r.get("health") != "ok"]
    assert not unhealthy, unhealthy
