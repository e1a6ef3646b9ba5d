"""Herald's metric catalogue: the one place that names every ``herald_*`` metric.

Everything that exports or reads a Herald metric imports it from here: the worker
middleware (counters, histogram, running gauge), the exporter's scrape-time collector
(gauges read from PostgreSQL), the Grafana dashboards and Prometheus alerts (by name,
checked by ``tests/test_dashboards.py`` and ``tests/test_alerts.py``), and the operator
guide (``docs/operations.md``). It is long (over 400 lines) on purpose: a catalogue read
in one place is what keeps names, labels and help texts from drifting apart; the digest
metrics, which belong to a feature of their own, are in ``monitoring.digest_metrics``.

Two rules hold for every metric:

* **Every series exists from the first scrape.** Each label set of each known actor,
  delivery status, token kind, job status and breaker is exported as ``0`` before
  anything has happened, so dashboards have no gaps and ``absent()``-style alerts only
  fire when a process is really missing. :func:`init_worker_labels` does this for the
  worker side, :func:`exporter_families` for the exporter side.
* **Each attempt is counted exactly once**, in one of three counters:
  ``herald_jobs_completed_total`` (attempt succeeded), ``herald_jobs_retried_total``
  (attempt failed and another attempt is scheduled) or ``herald_jobs_failed_total``
  (attempt failed and the job is given up: permanent error or retries exhausted). So
  ``herald_jobs_failed_total`` per actor equals the number of jobs the ledger marks
  ``failed`` by workers, and ``completed`` the number it marks ``complete``.

Multiprocess mode (``dramatiq actors --processes N``): prometheus_client chooses its
value storage once, when ``prometheus_client.values`` is first imported, from
``PROMETHEUS_MULTIPROC_DIR``; Herald imports the library before a worker boots, so
``monitoring/prometheus.py`` sets (and empties) that directory and then resets the
library's choice before calling :func:`create_worker_metrics`, and serves the directory
with a ``prometheus_client.multiprocess.MultiProcessCollector``. The exporter side is a normal
(single-process) custom collector and never touches that directory.

This module only declares; it starts no server and reads no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from herald.ledger import QUEUES, STATUSES
from monitoring import digest_metrics

# --------------------------------------------------------------------------------------
# Label values that are known in advance (pre-initialised to zero)
# --------------------------------------------------------------------------------------

#: Every Dramatiq actor Herald runs, mapped to its queue (defined once, in the ledger). The
#: pair is the ``actor`` / ``queue`` label set of every per-actor metric.
KNOWN_ACTORS: dict[str, str] = dict(QUEUES)

#: ``herald_deliveries_total{status}``: the terminal outcomes of one SMTP delivery.
#: ``ambiguous`` = the connection broke after DATA; the server may or may not have it.
DELIVERY_STATUSES: tuple[str, ...] = ("sent", "failed", "ambiguous")

#: ``herald_ai_tokens_total{kind}``: as reported by the Chat Completions ``usage``.
TOKEN_KINDS: tuple[str, ...] = ("prompt", "completion")

#: ``herald_jobs{status}``: every status of a row in ``herald.jobs`` (the ledger's list).
JOB_STATUSES: tuple[str, ...] = STATUSES

#: ``herald_circuit_breaker_open{breaker}``: one breaker per external dependency.
BREAKERS: tuple[str, ...] = ("smtp", "ai")

#: ``herald_changes_not_routed{outcome, reason}``: why a claimed change became no
#: notification (monitoring/sql/metrics.sql classifies; "other" appears only if found).
CHANGE_OUTCOME_REASONS: tuple[tuple[str, str], ...] = (
    ("skipped", "no_route"),
    ("skipped", "no_recipients"),
    ("failed", "over_limit"),
    ("failed", "malformed"),
)

# Default ports. Workers and the exporter each read HERALD_METRICS_PORT; the compose
# stack gives the exporter 9192 so both can run on one host.
DEFAULT_WORKER_METRICS_PORT = 9191
DEFAULT_EXPORTER_METRICS_PORT = 9192
DEFAULT_METRICS_HOST = "127.0.0.1"  # loopback unless configured (containers: 0.0.0.0)

# --------------------------------------------------------------------------------------
# Label names
# --------------------------------------------------------------------------------------

ACTOR_LABELS: tuple[str, str] = ("actor", "queue")
JOB_STATUS_LABELS: tuple[str, str, str] = ("actor", "queue", "status")

# --------------------------------------------------------------------------------------
# Worker side: names as they appear in the exposition (counters end in _total)
# --------------------------------------------------------------------------------------

JOBS_COMPLETED = "herald_jobs_completed_total"
JOBS_FAILED = "herald_jobs_failed_total"
JOBS_RETRIED = "herald_jobs_retried_total"
JOBS_DEFERRED = "herald_jobs_deferred_total"
JOB_DURATION = "herald_job_duration_seconds"
JOBS_RUNNING = "herald_jobs_running"
DELIVERIES = "herald_deliveries_total"
AI_TOKENS = "herald_ai_tokens_total"

#: Histogram buckets for one attempt's wall time, 5 ms to 5 min. The low end resolves
#: the orchestrator's and a reused SMTP connection's millisecond work; the 10 s to
#: 300 s end covers a slow AI completion up to the actors' time limits (which stay
#: well under RabbitMQ's 30 min consumer timeout). 15 buckets keep the series count
#: per actor modest (x4 actors x N worker hosts).
JOB_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

HELP: dict[str, str] = {
    JOBS_COMPLETED: "Job attempts that succeeded, by actor and queue.",
    JOBS_FAILED: (
        "Job attempts that failed for good (permanent error or retries exhausted); "
        "the job is marked failed in the ledger."
    ),
    JOBS_RETRIED: "Job attempts that failed and were scheduled to be retried.",
    JOBS_DEFERRED: (
        "Job attempts put off (circuit breaker open, rate limit reached) without spending a retry."
    ),
    JOB_DURATION: "Wall time of one job attempt, in seconds, whatever its outcome.",
    JOBS_RUNNING: "Job attempts executing right now, summed over live worker processes.",
    DELIVERIES: "SMTP deliveries by terminal status (sent, failed, ambiguous).",
    AI_TOKENS: "Tokens used by the AI summariser, by kind (prompt, completion).",
}

# --------------------------------------------------------------------------------------
# Exporter side: gauges computed from PostgreSQL at scrape time by one process
# --------------------------------------------------------------------------------------

JOBS_PENDING = "herald_jobs_pending"
JOBS_BY_STATUS = "herald_jobs"
JOBS_OLDEST_PENDING_AGE = "herald_jobs_oldest_pending_age_seconds"
CHANGES_UNCLAIMED = "herald_changes_unclaimed"
ORCHESTRATOR_LAST_SUCCESS = "herald_orchestrator_last_success_timestamp_seconds"
CIRCUIT_BREAKER_OPEN = "herald_circuit_breaker_open"
CHANGES_NOT_ROUTED = "herald_changes_not_routed"
EXPORTER_UP = "herald_exporter_up"
EXPORTER_SCRAPE_DURATION = "herald_exporter_scrape_duration_seconds"

HELP.update(
    {
        JOBS_PENDING: (
            "Ledger jobs with status pending, including delayed ones (eta in the future)."
        ),
        JOBS_BY_STATUS: "Ledger jobs by actor, queue and status.",
        JOBS_OLDEST_PENDING_AGE: (
            "Seconds since the oldest pending job became due (its eta, or its creation "
            "when it has none); 0 when nothing is due. Jobs delayed into the future "
            "(debounce, digest) do not count until their eta passes."
        ),
        CHANGES_UNCLAIMED: "Rows in herald.change_log not yet claimed by the orchestrator.",
        ORCHESTRATOR_LAST_SUCCESS: (
            "Unix time the orchestrator last finished a run without error; 0 if never."
        ),
        CIRCUIT_BREAKER_OPEN: "1 while the circuit breaker is open (calls refused), else 0.",
        CHANGES_NOT_ROUTED: (
            "Claimed changes that became no notification, still in the change log, by "
            "outcome (skipped, failed) and reason (no_route, no_recipients, over_limit, "
            "malformed). A gauge: the retention purge removes old rows."
        ),
        EXPORTER_UP: "1 if the exporter's last read of PostgreSQL succeeded, else 0.",
        EXPORTER_SCRAPE_DURATION: "Seconds the exporter spent reading PostgreSQL for this scrape.",
    }
)

#: Labels of every metric, by exposed name (the contract the dashboards rely on).
LABELS: dict[str, tuple[str, ...]] = {
    JOBS_COMPLETED: ACTOR_LABELS,
    JOBS_FAILED: ACTOR_LABELS,
    JOBS_RETRIED: ACTOR_LABELS,
    JOBS_DEFERRED: ACTOR_LABELS,
    JOB_DURATION: ACTOR_LABELS,
    JOBS_RUNNING: ACTOR_LABELS,
    DELIVERIES: ("status",),
    AI_TOKENS: ("kind",),
    JOBS_PENDING: ACTOR_LABELS,
    JOBS_BY_STATUS: JOB_STATUS_LABELS,
    JOBS_OLDEST_PENDING_AGE: ("actor",),
    CHANGES_UNCLAIMED: (),
    ORCHESTRATOR_LAST_SUCCESS: (),
    CIRCUIT_BREAKER_OPEN: ("breaker",),
    CHANGES_NOT_ROUTED: ("outcome", "reason"),
    EXPORTER_UP: (),
    EXPORTER_SCRAPE_DURATION: (),
}

#: Metric types, by exposed name.
TYPES: dict[str, str] = {
    JOBS_COMPLETED: "counter",
    JOBS_FAILED: "counter",
    JOBS_RETRIED: "counter",
    JOBS_DEFERRED: "counter",
    JOB_DURATION: "histogram",
    JOBS_RUNNING: "gauge",
    DELIVERIES: "counter",
    AI_TOKENS: "counter",
    JOBS_PENDING: "gauge",
    JOBS_BY_STATUS: "gauge",
    JOBS_OLDEST_PENDING_AGE: "gauge",
    CHANGES_UNCLAIMED: "gauge",
    ORCHESTRATOR_LAST_SUCCESS: "gauge",
    CIRCUIT_BREAKER_OPEN: "gauge",
    CHANGES_NOT_ROUTED: "gauge",
    EXPORTER_UP: "gauge",
    EXPORTER_SCRAPE_DURATION: "gauge",
}

WORKER_METRICS: tuple[str, ...] = (
    JOBS_COMPLETED,
    JOBS_FAILED,
    JOBS_RETRIED,
    JOBS_DEFERRED,
    JOB_DURATION,
    JOBS_RUNNING,
    DELIVERIES,
    AI_TOKENS,
)
EXPORTER_METRICS: tuple[str, ...] = (
    JOBS_PENDING,
    JOBS_BY_STATUS,
    JOBS_OLDEST_PENDING_AGE,
    CHANGES_UNCLAIMED,
    ORCHESTRATOR_LAST_SUCCESS,
    CIRCUIT_BREAKER_OPEN,
    CHANGES_NOT_ROUTED,
    EXPORTER_UP,
    EXPORTER_SCRAPE_DURATION,
    # Digests and recipients, counted by the ledger (monitoring/digest_metrics.py):
    # herald_digests_sent_total, herald_digests_skipped_total{reason},
    # herald_digest_items (histogram), herald_digest_lateness_seconds,
    # herald_recipients_skipped_total{reason}.
    *digest_metrics.METRICS,
)
HELP.update(digest_metrics.HELP)
LABELS.update(digest_metrics.LABELS)
TYPES.update(digest_metrics.TYPES)

# --------------------------------------------------------------------------------------
# API side: `herald serve` counts and times its own requests (served on its /metrics)
# --------------------------------------------------------------------------------------

HTTP_REQUESTS = "herald_http_requests_total"
HTTP_DURATION = "herald_http_request_duration_seconds"
#: ``status`` is the class of the response code: a bounded label set that can be
#: pre-initialised for every route (an exact code could not).
HTTP_STATUS_CLASSES: tuple[str, ...] = ("2xx", "3xx", "4xx", "5xx")
HTTP_REQUEST_LABELS: tuple[str, str, str] = ("method", "route", "status")
HTTP_DURATION_LABELS: tuple[str, str] = ("method", "route")
#: 1 ms to 10 s: a list page answers in milliseconds (the target is p95 < 50 ms at a
#: million jobs), /readyz in under 20 ms; the top buckets catch a stalled dependency.
HTTP_DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
)  # fmt: skip

HELP.update(
    {
        HTTP_REQUESTS: (
            "Requests answered by herald serve, by method, route template and status class."
        ),
        HTTP_DURATION: "Seconds herald serve took to answer a request, by method and route.",
    }
)
LABELS.update({HTTP_REQUESTS: HTTP_REQUEST_LABELS, HTTP_DURATION: HTTP_DURATION_LABELS})
TYPES.update({HTTP_REQUESTS: "counter", HTTP_DURATION: "histogram"})
API_METRICS: tuple[str, ...] = (HTTP_REQUESTS, HTTP_DURATION)

ALL_METRICS: tuple[str, ...] = WORKER_METRICS + EXPORTER_METRICS + API_METRICS


def _base_name(exposed: str) -> str:
    """prometheus_client wants a counter's name without ``_total`` (it adds it back)."""
    return exposed.removesuffix("_total")


# --------------------------------------------------------------------------------------
# Worker side factories
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerMetrics:
    """The worker-side metric objects, created once per process."""

    completed: Counter
    failed: Counter
    retried: Counter
    deferred: Counter
    duration: Histogram
    running: Gauge
    deliveries: Counter
    ai_tokens: Counter


def create_worker_metrics(registry: CollectorRegistry | None = None) -> WorkerMetrics:
    """Create the worker-side metrics in ``registry``.

    In a Dramatiq worker pass ``registry=None`` *after* pointing
    ``PROMETHEUS_MULTIPROC_DIR`` at an emptied directory: the values then go to that
    directory's files and the exposition process reads them with a
    ``MultiProcessCollector``. (Metrics must not also be registered in the default
    registry there, or the exposition would list them twice; ``None`` here means
    "not registered anywhere", which is what multiprocess mode wants.)

    In tests or a single process pass a fresh ``CollectorRegistry()``.
    """
    return WorkerMetrics(
        completed=Counter(
            _base_name(JOBS_COMPLETED), HELP[JOBS_COMPLETED], ACTOR_LABELS, registry=registry
        ),
        failed=Counter(_base_name(JOBS_FAILED), HELP[JOBS_FAILED], ACTOR_LABELS, registry=registry),
        retried=Counter(
            _base_name(JOBS_RETRIED), HELP[JOBS_RETRIED], ACTOR_LABELS, registry=registry
        ),
        deferred=Counter(
            _base_name(JOBS_DEFERRED), HELP[JOBS_DEFERRED], ACTOR_LABELS, registry=registry
        ),
        duration=Histogram(
            JOB_DURATION,
            HELP[JOB_DURATION],
            ACTOR_LABELS,
            buckets=JOB_DURATION_BUCKETS,
            registry=registry,
        ),
        # livesum: the sum over processes still alive; a crashed process's in-flight
        # count disappears with it (after mark_process_dead) instead of sticking forever.
        running=Gauge(
            JOBS_RUNNING,
            HELP[JOBS_RUNNING],
            ACTOR_LABELS,
            multiprocess_mode="livesum",
            registry=registry,
        ),
        deliveries=Counter(
            _base_name(DELIVERIES), HELP[DELIVERIES], ("status",), registry=registry
        ),
        ai_tokens=Counter(_base_name(AI_TOKENS), HELP[AI_TOKENS], ("kind",), registry=registry),
    )


def init_worker_labels(metrics: WorkerMetrics, actors: Mapping[str, str] = KNOWN_ACTORS) -> None:
    """Touch every known label set so each series is exported as 0 from the first scrape.

    ``actors`` maps actor name to queue name; pass the broker's real actors to include
    ones added after this module was written (extra actors are welcome, none are
    dropped). In multiprocess mode each process writes its zero samples to its own
    file, which is enough: the collector sums them.
    """
    for actor, queue in {**KNOWN_ACTORS, **actors}.items():
        for metric in (
            metrics.completed,
            metrics.failed,
            metrics.retried,
            metrics.deferred,
            metrics.duration,
        ):
            metric.labels(actor=actor, queue=queue)
        # Gauges need an explicit value to get a file entry in multiprocess mode.
        metrics.running.labels(actor=actor, queue=queue).inc(0)
    for status in DELIVERY_STATUSES:
        metrics.deliveries.labels(status=status)
    for kind in TOKEN_KINDS:
        metrics.ai_tokens.labels(kind=kind)


# --------------------------------------------------------------------------------------
# Exporter side: what one scrape read from PostgreSQL, and its metric families
# --------------------------------------------------------------------------------------


@dataclass
class ExporterSnapshot:
    """Figures read from PostgreSQL for one scrape. Missing keys are exported as 0.

    ``pending`` and ``oldest_pending_age`` are keyed by actor; ``jobs`` by
    ``(actor, status)``; ``breakers_open`` by breaker name. ``up`` is False when the
    read failed: then only ``herald_exporter_up`` and the duration are exported, so
    stale zeros never pass for real figures (and ``absent()`` alerts notice).
    """

    pending: dict[str, float] = field(default_factory=dict)
    jobs: dict[tuple[str, str], float] = field(default_factory=dict)
    oldest_pending_age: dict[str, float] = field(default_factory=dict)
    changes_unclaimed: float = 0.0
    orchestrator_last_success: float = 0.0
    breakers_open: dict[str, bool] = field(default_factory=dict)
    #: Keyed by ``(outcome, reason)``; every known pair is exported, 0 when absent.
    changes_not_routed: dict[tuple[str, str], float] = field(default_factory=dict)
    #: herald.counters' rows, (metric, label) -> value; and the most overdue digest's
    #: lateness in seconds (monitoring/digest_metrics.py).
    ledger_counters: dict[tuple[str, str], float] = field(default_factory=dict)
    digest_lateness: float = 0.0
    up: bool = True
    scrape_duration: float = 0.0
    actors: Mapping[str, str] = field(default_factory=lambda: dict(KNOWN_ACTORS))


def _gauge(name: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, HELP[name], labels=list(labels))


def exporter_families(snapshot: ExporterSnapshot) -> Iterator[Metric]:
    """The exporter's metric families for one snapshot, every known label set filled.

    A custom collector's ``collect()`` can simply ``yield from exporter_families(snap)``.
    Actors found in the ledger but unknown here should be added to ``snapshot.actors``
    (with their queue) so their series appear too.
    """
    actors = {**KNOWN_ACTORS, **snapshot.actors}
    # Ledger rows can name an actor we do not know the queue of; keep them visible.
    for actor, _status in snapshot.jobs:
        actors.setdefault(actor, "")
    for actor in (*snapshot.pending, *snapshot.oldest_pending_age):
        actors.setdefault(actor, "")

    up = _gauge(EXPORTER_UP)
    up.add_metric([], 1.0 if snapshot.up else 0.0)
    duration = _gauge(EXPORTER_SCRAPE_DURATION)
    duration.add_metric([], snapshot.scrape_duration)
    if not snapshot.up:
        yield up
        yield duration
        return

    pending = _gauge(JOBS_PENDING, ACTOR_LABELS)
    by_status = _gauge(JOBS_BY_STATUS, JOB_STATUS_LABELS)
    oldest = _gauge(JOBS_OLDEST_PENDING_AGE, ("actor",))
    statuses = list(JOB_STATUSES) + sorted({s for _a, s in snapshot.jobs} - set(JOB_STATUSES))
    for actor, queue in sorted(actors.items()):
        pending.add_metric([actor, queue], float(snapshot.pending.get(actor, 0)))
        oldest.add_metric([actor], float(snapshot.oldest_pending_age.get(actor, 0)))
        for status in statuses:
            by_status.add_metric(
                [actor, queue, status], float(snapshot.jobs.get((actor, status), 0))
            )

    unclaimed = _gauge(CHANGES_UNCLAIMED)
    unclaimed.add_metric([], float(snapshot.changes_unclaimed))
    last_success = _gauge(ORCHESTRATOR_LAST_SUCCESS)
    last_success.add_metric([], float(snapshot.orchestrator_last_success))
    breakers = _gauge(CIRCUIT_BREAKER_OPEN, ("breaker",))
    for breaker in sorted(set(BREAKERS) | set(snapshot.breakers_open)):
        breakers.add_metric([breaker], 1.0 if snapshot.breakers_open.get(breaker) else 0.0)
    not_routed = _gauge(CHANGES_NOT_ROUTED, LABELS[CHANGES_NOT_ROUTED])
    for pair in dict.fromkeys([*CHANGE_OUTCOME_REASONS, *sorted(snapshot.changes_not_routed)]):
        not_routed.add_metric(list(pair), float(snapshot.changes_not_routed.get(pair, 0)))

    yield from (pending, by_status, oldest, unclaimed, last_success, breakers, not_routed)
    yield from digest_metrics.families(snapshot.ledger_counters, snapshot.digest_lateness)
    yield from (up, duration)


class SnapshotCollector:
    """A collector serving a fixed (or externally updated) snapshot: tests and demos.

    The real exporter's collector reads PostgreSQL in ``collect()`` and yields
    ``exporter_families(snapshot)``; this one just holds a snapshot.
    """

    def __init__(self, snapshot: ExporterSnapshot | None = None) -> None:
        self.snapshot = snapshot or ExporterSnapshot()

    def collect(self) -> Iterator[Metric]:
        yield from exporter_families(self.snapshot)

    def describe(self) -> list[Metric]:
        # Returning families from describe() lets the registry detect name clashes.
        return list(exporter_families(ExporterSnapshot()))


# --------------------------------------------------------------------------------------
# API side factories
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiMetrics:
    """`herald serve`'s request counter and latency histogram."""

    requests: Counter
    duration: Histogram


def create_api_metrics(registry: CollectorRegistry | None) -> ApiMetrics:
    """The API's metrics in ``registry`` (one per application: tests build several)."""
    return ApiMetrics(
        requests=Counter(
            _base_name(HTTP_REQUESTS),
            HELP[HTTP_REQUESTS],
            HTTP_REQUEST_LABELS,
            registry=registry,
        ),
        duration=Histogram(
            HTTP_DURATION,
            HELP[HTTP_DURATION],
            HTTP_DURATION_LABELS,
            buckets=HTTP_DURATION_BUCKETS,
            registry=registry,
        ),
    )


def init_api_labels(metrics: ApiMetrics, routes: Iterable[tuple[str, str]]) -> None:
    """Every (method, route template) the application serves, at zero from the first scrape."""
    for method, route in routes:
        metrics.duration.labels(method=method, route=route)
        for status in HTTP_STATUS_CLASSES:
            metrics.requests.labels(method=method, route=route, status=status)
