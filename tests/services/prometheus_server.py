"""A real Prometheus (Debian's ``prometheus`` binary) for one test, on loopback.

``PrometheusServer`` writes a config into a temporary directory, starts Prometheus with
its TSDB there on a free 127.0.0.1 port, scrapes the given targets every second and
answers PromQL through the HTTP API. Everything it waits for is bounded.

Tests point it at whatever serves Herald metrics: a fake exposition server today
(``tests/test_dashboards.py``), a real worker and ``herald metrics serve`` after a real
run. :func:`check_dashboard_queries` then runs every dashboard panel and every alert
expression through it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.services import ServiceUnavailable, free_port, wait_until

START_TIMEOUT = 30.0
QUERY_TIMEOUT = 10.0
DEFAULT_JOB = "herald"


def prometheus_binary() -> str:
    """Path of the ``prometheus`` binary, or ServiceUnavailable."""
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if not found:
        raise ServiceUnavailable("prometheus not found (apt-get install prometheus)")
    return found


class PrometheusServer:
    """A throw-away Prometheus scraping ``scrape_targets`` (``host:port`` strings).

    ``scrape_targets`` all go into one job named ``job_name``; ``jobs`` adds more jobs
    (name -> targets), e.g. ``{"herald-workers": [...], "herald-exporter": [...]}``,
    which is what the dashboards' ``up{job=...}`` queries expect. ``rule_files`` are
    loaded too (copied into the temp dir), so a test can check that they evaluate.
    """

    def __init__(
        self,
        scrape_targets: list[str] | None = None,
        scrape_interval: str = "1s",
        *,
        job_name: str = DEFAULT_JOB,
        jobs: Mapping[str, Iterable[str]] | None = None,
        rule_files: Iterable[str | os.PathLike[str]] = (),
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.binary = prometheus_binary()
        self.scrape_interval = scrape_interval
        self.jobs: dict[str, list[str]] = {}
        if scrape_targets:
            self.jobs[job_name] = list(scrape_targets)
        for name, targets in (jobs or {}).items():
            self.jobs[name] = list(targets)
        if not self.jobs:
            raise ValueError("PrometheusServer needs at least one scrape target")
        self._tmp = tempfile.TemporaryDirectory(prefix="herald-prometheus-")
        self.dir = Path(self._tmp.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._rule_files = [Path(p) for p in rule_files]
        self._log = (self.dir / "prometheus.log").open("wb")
        self._process: subprocess.Popen[bytes] | None = None
        try:
            self._start(start_timeout)
        except BaseException:
            self.stop()
            raise

    # -- lifecycle --------------------------------------------------------------------

    def _write_config(self) -> Path:
        rules = []
        for index, source in enumerate(self._rule_files):
            target = self.dir / f"rules-{index}-{source.name}"
            shutil.copyfile(source, target)
            rules.append(str(target))
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
            },
            "rule_files": rules,
            "scrape_configs": [
                {"job_name": name, "static_configs": [{"targets": targets}]}
                for name, targets in self.jobs.items()
            ],
        }
        path = self.dir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def _start(self, timeout: float) -> None:
        config = self._write_config()
        command = [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.dir,
            start_new_session=True,  # our own process group: stop() kills only it
        )
        if not wait_until(self._ready, timeout, interval=0.1):
            raise ServiceUnavailable(f"prometheus did not become ready: {self.log_tail()}")

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise ServiceUnavailable(f"prometheus exited: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return (self.dir / "prometheus.log").read_bytes()[-chars:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if not self._log.closed:
            self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API --------------------------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET ``/api/v1/<path>``; returns the decoded body, errors included (400/422)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(  # noqa: S310 - loopback URL we built
                f"{self.url}/api/v1/{path}{query}", timeout=QUERY_TIMEOUT
            ) as response:
                return dict(json.load(response))
        except urllib.error.HTTPError as error:  # bad_data etc. come back as JSON
            body = error.read()
            try:
                return dict(json.loads(body))
            except ValueError:
                return {"status": "error", "error": f"HTTP {error.code}: {body[:200]!r}"}

    def query(self, expr: str) -> dict[str, Any]:
        """Instant query; the API's JSON (``status``, ``data.result`` or ``error``)."""
        return self.api("query", {"query": expr})

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets").get("data", {}).get("activeTargets", []))

    def wait_for_scrape(self, scrapes: int = 3, timeout: float = 30.0) -> None:
        """Wait until every target is up and has been scraped ``scrapes`` times.

        Several scrapes are needed before ``rate()``/``increase()`` return anything.
        Raises AssertionError (with the target errors) after ``timeout`` seconds.
        """
        expected = sum(len(targets) for targets in self.jobs.values())
        needed = f"count_over_time(up[1h]) >= {scrapes}"

        def done() -> bool:
            targets = self.targets()
            if len(targets) < expected or any(t.get("health") != "up" for t in targets):
                return False
            result = self.query(needed)
            return len(result.get("data", {}).get("result", [])) >= expected

        if not wait_until(done, timeout, interval=0.25):
            errors = [
                f"{t.get('scrapeUrl')}: {t.get('health')} {t.get('lastError')}"
                for t in self.targets()
            ]
            raise AssertionError(f"targets not scraped {scrapes}x in {timeout}s: {errors}")

    def wait_for_rules(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until every loaded rule has been evaluated once; returns the rules."""
        rules: list[dict[str, Any]] = []

        def done() -> bool:
            nonlocal rules
            groups = self.api("rules").get("data", {}).get("groups", [])
            rules = [rule for group in groups for rule in group.get("rules", [])]
            return bool(rules) and all(
                rule.get("lastEvaluation", "").find("0001-") != 0 for rule in rules
            )

        if not wait_until(done, timeout, interval=0.25):
            raise AssertionError(f"rules not evaluated within {timeout}s")
        return rules


# ------------------------------------------------------------------------------------
# Dashboard and alert queries against a live Prometheus
# ------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
ALERTS_FILE = REPO / "prometheus" / "alerts.yml"
GRAFANA_ALERTS_FILE = REPO / "grafana" / "provisioning" / "alerting" / "herald-alerts.yml"

#: Grafana's built-in variables, replaced the way Grafana would for a 1 h view.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${__range}": "1h",
}

HEADLINE_PANEL_TYPES = {"stat"}


def iter_panels(dashboard: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def render_expr(expr: str, dashboard: Mapping[str, Any] | None = None) -> str:
    """Replace Grafana variables so Prometheus can run ``expr``.

    Built-ins get fixed values; dashboard template variables become ``.*`` (their
    "All" value), which is what they mean inside ``=~"$var"`` matchers.
    """
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    variables = [v["name"] for v in (dashboard or {}).get("templating", {}).get("list", [])]
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", ".*").replace("$" + name, ".*")
    return expr


def dashboard_queries(directory: Path = DASHBOARD_DIR) -> list[tuple[str, str, str, bool]]:
    """``(where, panel type, expr, is_headline)`` for every target of every dashboard."""
    found = []
    for path in sorted(directory.glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                if "expr" in target:
                    where = f"{path.name} panel {panel.get('id')} {panel.get('title')!r}"
                    where += f" ref {target.get('refId')}"
                    headline = panel.get("type") in HEADLINE_PANEL_TYPES
                    found.append(
                        (
                            where,
                            panel.get("type", ""),
                            render_expr(target["expr"], dashboard),
                            headline,
                        )
                    )
        for variable in dashboard.get("templating", {}).get("list", []):
            query = variable.get("query")
            if isinstance(query, dict):
                query = query.get("query")
            if variable.get("type") == "query" and isinstance(query, str):
                # label_values(metric, label) is Grafana syntax; run its metric part.
                if query.startswith("label_values(") and query.endswith(")"):
                    inner = query[len("label_values(") : -1].rsplit(",", 1)[0]
                    query = inner.strip()
                found.append((f"{path.name} variable {variable['name']}", "variable", query, False))
    return found


def alert_queries() -> list[tuple[str, str]]:
    """``(where, expr)`` for every Prometheus alert and every Grafana-managed rule query."""
    found = []
    for group in yaml.safe_load(ALERTS_FILE.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            found.append((f"alerts.yml {name}", rule["expr"]))
    if GRAFANA_ALERTS_FILE.exists():
        provisioning = yaml.safe_load(GRAFANA_ALERTS_FILE.read_text())
        for group in provisioning.get("groups", []):
            for rule in group.get("rules", []):
                for step in rule.get("data", []):
                    expr = step.get("model", {}).get("expr")
                    if expr:
                        found.append((f"grafana alert {rule['title']} {step['refId']}", expr))
    return found


def check_dashboard_queries(prom: PrometheusServer, *, headline_must_have_data: bool) -> list[str]:
    """Run every dashboard and alert query through ``prom``; return the problems found.

    Each query must be accepted (``status: success``). With
    ``headline_must_have_data`` every headline (stat) panel must also return at least
    one series: call it after ``prom.wait_for_scrape()`` against a target that exports
    every Herald metric (a fake one, or a real worker plus exporter).
    """
    problems = []
    for where, _type, expr, headline in dashboard_queries():
        result = prom.query(expr)
        if result.get("status") != "success":
            problems.append(f"{where}: {result.get('errorType')}: {result.get('error')} [{expr}]")
        elif headline and headline_must_have_data and not result["data"]["result"]:
            problems.append(f"{where}: headline returned no series [{expr}]")
    for where, expr in alert_queries():
        result = prom.query(expr)
        if result.get("status") != "success":
            problems.append(f"{where}: {result.get('errorType')}: {result.get('error')} [{expr}]")
    return problems
