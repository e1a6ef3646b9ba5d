"""Build grafana/dashboards/*.json from this one readable description.

    python grafana/build_dashboards.py          # rewrite the JSON files
    python grafana/build_dashboards.py --check  # exit 1 if they are out of date

The JSON is committed (Grafana's file provider reads it as is); this script is the
source. ``tests/test_dashboards.py`` fails when the two differ. Every panel and target
names the provisioned datasource uid ``herald-prometheus``: no ``${DS_...}`` inputs,
which file provisioning would not resolve.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "herald-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"

# Herald's work queues and their Dramatiq delay queues; X.XQ are the dead letters.
WORK_QUEUES = r'queue=~"(orchestrate|enrich|email|maintenance)(\\.DQ)?"'
DEAD_QUEUES = r'queue=~".+\\.XQ"'
ACTOR = 'actor=~"$actor"'


class Layout:
    """Hands out panel ids and grid positions, left to right, top to bottom."""

    def __init__(self) -> None:
        self.next_id = 1
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.panels: list[dict[str, Any]] = []

    def add(self, panel: dict[str, Any], w: int, h: int) -> None:
        if self.x + w > 24:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.next_id += 1
        self.x += w
        self.row_height = max(self.row_height, h)
        self.panels.append(panel)

    def row(self, title: str) -> None:
        if self.x:
            self.x, self.y, self.row_height = 0, self.y + self.row_height, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)
        self.x, self.y, self.row_height = 0, self.y + 1, 0


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        "range": not instant,
        "instant": instant,
    }


def per_min_by_actor(counter: str) -> str:
    """Per-minute rate of a per-actor counter, honouring the actor variable."""
    return f"sum by (actor) (rate({counter}{{{ACTOR}}}[$__rate_interval])) * 60"


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def stat(
    title: str,
    expr: str,
    description: str,
    unit: str = "short",
    steps: tuple[tuple[float | None, str], ...] = ((None, "green"),),
    decimals: int | None = 0,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit, "thresholds": thresholds(*steps)}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(expr)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "value",
            "justifyMode": "center",
        },
    }


def timeseries(
    title: str,
    targets: list[tuple[str, str]],
    description: str,
    unit: str = "short",
    kind: str = "timeseries",
) -> dict[str, Any]:
    refs = "ABCDEFGH"
    panel: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": [target(e, legend, refs[i]) for i, (e, legend) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }
    if kind == "state-timeline":
        panel["fieldConfig"]["defaults"].update(
            {
                "mappings": [
                    {
                        "type": "value",
                        "options": {
                            "0": {"text": "closed", "color": "green"},
                            "1": {"text": "open", "color": "red"},
                        },
                    }
                ],
                "thresholds": thresholds((None, "green"), (1, "red")),
            }
        )
        panel["options"] = {"showValue": "never", "mergeValues": True}
    return panel


def digest_row(lay: Layout) -> None:
    """Digests: how late the most overdue one is, sent and skipped, items per digest, and
    recipients a change did not go to (all counted by the ledger, read by the exporter)."""
    lay.row("Digests and recipients")
    lay.add(
        stat(
            "Most overdue digest",
            "max(herald_digest_lateness_seconds)",
            "How late the most overdue digest is: a due schedule not claimed yet, or a claimed "
            "period not sent yet (herald_digest_lateness_seconds). Alert: over an hour.",
            unit="s",
            steps=((None, "green"), (600, "orange"), (3600, "red")),
        ),
        4,
        6,
    )
    lay.add(
        timeseries(
            "Digests per hour",
            [
                ("sum(increase(herald_digests_sent_total[1h]))", "sent"),
                (
                    "sum by (reason) (increase(herald_digests_skipped_total[1h]))",
                    "skipped: {{reason}}",
                ),
            ],  # fmt: skip
            "Digests sent, and periods that sent nothing (empty: nothing new; muted).",
        ),
        7,
        6,
    )
    lay.add(
        timeseries(
            "Items per digest",
            [
                (
                    "histogram_quantile(0.5, sum by (le) (rate(herald_digest_items_bucket[6h])))",
                    "p50",
                ),
                (
                    "histogram_quantile(0.95, sum by (le) (rate(herald_digest_items_bucket[6h])))",
                    "p95",
                ),
                (
                    "sum(rate(herald_digest_items_sum[6h]))"
                    " / sum(rate(herald_digest_items_count[6h]))",
                    "mean",
                ),
            ],  # fmt: skip
            "Notifications per digest sent (over 6 h), listed or counted in 'and N more'.",
        ),
        7,
        6,
    )
    lay.add(
        timeseries(
            "Recipients skipped per hour",
            [("sum by (reason) (increase(herald_recipients_skipped_total[1h]))", "{{reason}}")],
            "Recipients a change did not go to: no or an invalid address in a "
            "recipient_fields column, or muted. herald.recipient_skips says which and why.",
        ),
        6,
        6,
    )


def _headline_row(lay: Layout) -> None:
    """Headline: one glance, all actors."""
    lay.row("Now")
    finished_1h = (
        "sum(increase(herald_jobs_failed_total[1h]))"
        " + sum(increase(herald_jobs_completed_total[1h]))"
    )
    headline = [
        stat(
            "Pending",
            "sum(herald_jobs_pending)",
            "Ledger jobs waiting to run, delayed ones included (herald_jobs_pending).",
            steps=((None, "green"), (1000, "orange")),
        ),
        stat(
            "Retrying / min",
            "sum(rate(herald_jobs_retried_total[5m])) * 60",
            "Failed attempts rescheduled for a retry, per minute over the last 5 min.",
            decimals=1,
            steps=((None, "green"), (1, "orange")),
        ),
        stat(
            "Dead (failed)",
            'sum(herald_jobs{status="failed"})',
            "Jobs the ledger marks failed for good; `herald jobs list --status failed`.",
            steps=((None, "green"), (1, "orange")),
        ),
        stat(
            "Completed 1h",
            "sum(increase(herald_jobs_completed_total[1h]))",
            "Job attempts that succeeded in the last hour.",
        ),
        stat(
            "Failed 1h",
            "sum(increase(herald_jobs_failed_total[1h]))",
            "Jobs given up in the last hour (permanent error or retries exhausted).",
            steps=((None, "green"), (1, "orange")),
        ),
        stat(
            "Failure % 1h",
            f"100 * sum(increase(herald_jobs_failed_total[1h])) / clamp_min({finished_1h}, 1)",
            "Failed / (failed + completed) over the last hour; alert at 10 % over 15 min.",
            unit="percent",
            decimals=1,
            steps=((None, "green"), (5, "orange"), (10, "red")),
        ),
        stat(
            "Workers up",
            'sum(up{job="herald-workers"})',
            "Worker metrics endpoints Prometheus scrapes successfully.",
            steps=((None, "red"), (1, "green")),
        ),
        stat(
            "Orchestrator last success",
            "time() - max(herald_orchestrator_last_success_timestamp_seconds)",
            "Seconds since the orchestrator last finished a run; it runs every minute.",
            unit="s",
            steps=((None, "green"), (180, "orange"), (300, "red")),
        ),
    ]
    for panel in headline:
        lay.add(panel, 3, 4)
    for panel in _health_stats():
        lay.add(panel, 3, 4)


def _health_stats() -> list[dict[str, Any]]:
    """The headline's second line: the change log, the breakers and the orchestrator."""
    return [
        stat(
            "Unclaimed changes",
            "sum(herald_changes_unclaimed)",
            "herald.change_log rows the orchestrator has not claimed yet.",
            steps=((None, "green"), (5000, "orange")),
        ),
        stat(
            "Oldest due job",
            "max(herald_jobs_oldest_pending_age_seconds)",
            "How long the oldest due pending job has waited (delayed jobs excluded).",
            unit="s",
            steps=((None, "green"), (300, "orange"), (900, "red")),
        ),
        stat("Running now", "sum(herald_jobs_running)", "Attempts executing right now."),
        stat(
            "Breakers open",
            "sum(herald_circuit_breaker_open)",
            "Open circuit breakers (smtp, ai).",
            steps=((None, "green"), (1, "red")),
        ),
        stat(
            "Exporter up",
            "min(herald_exporter_up)",
            "1 when the exporter's last read of PostgreSQL succeeded.",
            steps=((None, "red"), (1, "green")),
        ),
        stat(
            "AI tokens 1h",
            "sum(increase(herald_ai_tokens_total[1h]))",
            "Prompt + completion tokens in the last hour; budget alert at 500k.",
            steps=((None, "green"), (500000, "red")),
        ),
        stat(
            "Emails sent 1h",
            'sum(increase(herald_deliveries_total{status="sent"}[1h]))',
            "SMTP deliveries accepted by the server in the last hour.",
        ),
        stat(
            "Ambiguous 1h",
            'sum(increase(herald_deliveries_total{status="ambiguous"}[1h]))',
            "Deliveries whose outcome is unknown (connection lost after DATA).",
            steps=((None, "green"), (1, "orange")),
        ),
    ]


def _throughput_row(lay: Layout) -> None:
    """Throughput and latency, per actor."""
    lay.row("Throughput and latency")
    lay.add(
        timeseries(
            "Completed vs failed per actor (per min)",
            [
                (
                    per_min_by_actor("herald_jobs_completed_total"),
                    "{{actor}} completed",
                ),
                (
                    per_min_by_actor("herald_jobs_failed_total"),
                    "{{actor}} failed",
                ),
                (
                    per_min_by_actor("herald_jobs_retried_total"),
                    "{{actor}} retried",
                ),
            ],
            "Attempts per minute by outcome; each attempt is counted once.",
        ),
        12,
        8,
    )
    quantiles = [
        (
            f"histogram_quantile({q}, sum by (actor, le) "
            f"(rate(herald_job_duration_seconds_bucket{{{ACTOR}}}[$__rate_interval])))",
            f"{{{{actor}}}} p{int(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]
    lay.add(
        timeseries(
            "Attempt duration p50 / p95 / p99 per actor",
            quantiles,
            "From herald_job_duration_seconds (5 ms to 5 min buckets).",
            unit="s",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Failure ratio per actor (15 min)",
            [
                (
                    f"sum by (actor) (increase(herald_jobs_failed_total{{{ACTOR}}}[15m]))"
                    " / clamp_min("
                    f"sum by (actor) (increase(herald_jobs_failed_total{{{ACTOR}}}[15m])) + "
                    f"sum by (actor) (increase(herald_jobs_completed_total{{{ACTOR}}}[15m])), 1)",
                    "{{actor}}",
                )
            ],
            "What HeraldFailureRatioHigh evaluates (threshold 0.10, at least 20 jobs).",
            unit="percentunit",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Running per actor",
            [(f"sum by (actor) (herald_jobs_running{{{ACTOR}}})", "{{actor}}")],
            "Attempts in progress (live worker processes only).",
        ),
        12,
        8,
    )


def _backlog_row(lay: Layout) -> None:
    """Backlog (ledger)."""
    lay.row("Backlog (ledger)")
    lay.add(
        timeseries(
            "Pending per actor",
            [(f"sum by (actor) (herald_jobs_pending{{{ACTOR}}})", "{{actor}}")],
            "Ledger jobs pending, delayed included.",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Oldest due pending job per actor",
            [(f"max by (actor) (herald_jobs_oldest_pending_age_seconds{{{ACTOR}}})", "{{actor}}")],
            "Alert HeraldOldestPendingTooOld at 15 min.",
            unit="s",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Unclaimed changes",
            [("sum(herald_changes_unclaimed)", "unclaimed")],
            "Change-log rows waiting for the orchestrator.",
        ),
        8,
        8,
    )
    lay.add(
        timeseries(
            "Ledger jobs by status",
            [(f"sum by (status) (herald_jobs{{{ACTOR}}})", "{{status}}")],
            "All ledger rows by status (herald_jobs).",
        ),
        16,
        8,
    )
    lay.add(
        timeseries(
            "Changes with no notification",
            [("sum by (outcome, reason) (herald_changes_not_routed)", "{{outcome}}: {{reason}}")],
            "Claimed changes still in the change log that became no email, by reason: "
            "skipped (no_route: a tracked table without a route; no_recipients) or failed "
            "(over_limit, malformed). `herald stats` lists them too.",
        ),
        8,
        8,
    )


def _queues_row(lay: Layout) -> None:
    """RabbitMQ queues."""
    lay.row("Queues (RabbitMQ)")
    lay.add(
        timeseries(
            "Queue depth: ready / unacked",
            [
                (
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_ready{{{WORK_QUEUES}}})",
                    "{{queue}} ready",
                ),
                (
                    f"sum by (queue) (rabbitmq_detailed_queue_messages_unacked{{{WORK_QUEUES}}})",
                    "{{queue}} unacked",
                ),
            ],
            "Per queue from RabbitMQ's /metrics/detailed. X.DQ unacked = retries waiting "
            "in worker memory.",
        ),
        12,
        8,
    )
    lay.add(
        timeseries(
            "Consumers per queue",
            [(f"sum by (queue) (rabbitmq_detailed_queue_consumers{{{WORK_QUEUES}}})", "{{queue}}")],
            "0 on a work queue fires HeraldQueueNoConsumers.",
        ),
        6,
        8,
    )
    lay.add(
        timeseries(
            "Dead letters (X.XQ)",
            [(f"sum by (queue) (rabbitmq_detailed_queue_messages{{{DEAD_QUEUES}}})", "{{queue}}")],
            "Messages Dramatiq gave up on (kept 7 days); the ledger has them as failed.",
        ),
        6,
        8,
    )


def _dependencies_row(lay: Layout) -> None:
    """Dependencies."""
    digest_row(lay)

    lay.row("Dependencies")
    lay.add(
        timeseries(
            "Circuit breakers",
            [("max by (breaker) (herald_circuit_breaker_open)", "{{breaker}}")],
            "Open = Herald stopped calling the dependency for a while.",
            kind="state-timeline",
        ),
        8,
        6,
    )
    lay.add(
        timeseries(
            "AI tokens per hour",
            [("sum by (kind) (increase(herald_ai_tokens_total[1h]))", "{{kind}}")],
            "Rolling 1 h token use by kind; budget 500k (prompt + completion).",
        ),
        8,
        6,
    )
    lay.add(
        timeseries(
            "Deliveries per min by status",
            [
                (
                    "sum by (status) (rate(herald_deliveries_total[$__rate_interval])) * 60",
                    "{{status}}",
                )
            ],
            "SMTP outcomes.",
        ),
        8,
        6,
    )
    lay.add(
        timeseries(
            "Scrape targets up",
            [('sum by (job) (up{job=~"herald-.*|rabbitmq.*"})', "{{job}}")],
            "Targets Prometheus scrapes successfully, by job.",
        ),
        12,
        6,
    )
    lay.add(
        timeseries(
            "Exporter scrape duration",
            [("max(herald_exporter_scrape_duration_seconds)", "duration")],
            "Time the exporter spends reading PostgreSQL per scrape.",
            unit="s",
        ),
        12,
        6,
    )


def overview() -> dict[str, Any]:
    lay = Layout()
    _headline_row(lay)
    _throughput_row(lay)
    _backlog_row(lay)
    _queues_row(lay)
    _dependencies_row(lay)
    return {
        "uid": "herald-overview",
        "title": "Herald overview",
        "description": "Herald pipeline: pending, failed and complete jobs, queues, "
        "dependencies. Runbooks: docs/operations.md.",
        "tags": ["herald"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "actor",
                    "label": "Actor",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": {
                        "query": "label_values(herald_jobs_completed_total, actor)",
                        "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    },
                    "definition": "label_values(herald_jobs_completed_total, actor)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "sort": 1,
                }
            ]
        },
        "panels": lay.panels,
    }


DASHBOARDS = {"herald-overview.json": overview}


def render() -> dict[str, str]:
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    stale = []
    for name, text in render().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print("out of date (run python grafana/build_dashboards.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
