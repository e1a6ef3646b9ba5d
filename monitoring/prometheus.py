"""Herald's Prometheus middleware for Dramatiq workers.

It replaces ``dramatiq.middleware.prometheus.Prometheus`` and avoids its traps:

* **Each attempt is counted once**, in exactly one of ``herald_jobs_completed_total``
  (no exception), ``herald_jobs_retried_total`` (exception, and Retries scheduled
  another attempt) or ``herald_jobs_failed_total`` (exception, and the message failed:
  retries exhausted, a ``throws`` exception or a ``retry_when`` refusal). The decision
  is read from ``message.failed`` in ``after_process_message``, so this middleware
  must come *before* ``Retries`` in the middleware list: after-hooks run in reverse
  order, so Retries has decided by the time ours runs. Nothing is counted on enqueue,
  so the ``X.DQ`` round trip of a retry is never counted twice.
* **Labels** are ``actor`` and ``queue``, the canonical queue name (``q_name``).
* **Skips are safe.** ``herald_jobs_running`` is only decremented for a message
  whose ``before_process_message`` *this* middleware ran (tracked per message id),
  so a message skipped by an earlier middleware (periodiq's stale ticks, the
  ledger's canceled jobs) never drives it negative. Skipped messages count as
  neither completed nor failed.
* **Multiprocess** (``--processes N``; ``monitoring.multiprocess``): every worker process writes
  to ``PROMETHEUS_MULTIPROC_DIR`` (default ``<tmp>/herald-metrics/<port>``), which the
  first process to boot while no other Herald worker uses it empties. One process
  per machine -- whoever holds a non-blocking ``flock`` on the directory's server
  lock -- serves the directory on ``HERALD_METRICS_HOST:HERALD_METRICS_PORT``
  (loopback by default). The others retry the lock every few seconds, so the
  endpoint moves to a surviving process if its holder dies. A process that shuts
  down marks itself dead, so its ``running`` gauge disappears with it.
* **Every series exists from the first scrape**: every known actor's label sets are
  created at zero (``monitoring.metrics.init_worker_labels``).

The exposition server only starts under the ``dramatiq`` CLI (``after_process_boot``)
and never for Dramatiq's ``StubBroker`` (the demo, unit tests) unless ``expose=True``.
Tests inject a ``registry``: the metrics are then created at once, in that registry,
and no server or directory is touched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from monitoring import metrics as catalogue
from monitoring.multiprocess import (
    SERVER_LOCK,
    create_multiprocess_metrics,
    default_multiproc_dir,
    prepare_directory,
    start_exposition_server,
)

logger = logging.getLogger(__name__)

#: Seconds between a non-serving process's attempts to take over the endpoint.
SERVER_RETRY_SECONDS = 5.0

#: The actor whose permanent failures are failed deliveries (``herald_deliveries_total``).
DELIVERY_ACTOR = "send_email"

#: The worker metrics of this process, for :func:`record_delivery` / :func:`record_tokens`.
_active: catalogue.WorkerMetrics | None = None


def record_delivery(outcome: Any) -> None:
    """Count one SMTP delivery from an ``herald.email.deliver.DeliveryOutcome``.

    ``sent`` when the server accepted it; ``ambiguous`` when it was sent again after a
    worker died mid-send (the recipient may have it twice, same Message-ID). An
    ``already_sent`` or ``skipped`` outcome sent nothing and is not counted. Failed
    deliveries are counted by the middleware when a ``send_email`` job fails for good.
    """
    active = _active
    if active is None or getattr(outcome, "status", None) != "sent":
        return
    status = "ambiguous" if getattr(outcome, "ambiguous", False) else "sent"
    active.deliveries.labels(status=status).inc()


def record_batch(report: Any, actor: str = DELIVERY_ACTOR, queue: str = "email") -> None:
    """Count each job of a batch as a job of its own actor, as the middleware counts a lone
    one: from an ``herald.email.batch.BatchReport``. Jobs handed back were not tried
    and are not counted (they are counted when they run)."""
    active = _active
    if active is None:
        return
    labels = (actor, queue)
    for sent in report.sent:
        active.completed.labels(*labels).inc()
        active.duration.labels(*labels).observe(sent.seconds)
    for retry in report.retry:
        active.retried.labels(*labels).inc()
        active.duration.labels(*labels).observe(retry.seconds)
    for _ in report.failed:
        active.failed.labels(*labels).inc()
        if actor == DELIVERY_ACTOR:
            active.deliveries.labels(status="failed").inc()
    for _ in report.deferred:
        active.deferred.labels(*labels).inc()


def record_tokens(prompt: int | None, completion: int | None) -> None:
    """Count AI tokens as reported by the Chat Completions ``usage``."""
    active = _active
    if active is None:
        return
    if prompt:
        active.ai_tokens.labels(kind="prompt").inc(prompt)
    if completion:
        active.ai_tokens.labels(kind="completion").inc(completion)


class Prometheus(Middleware):
    """Exports Herald's worker metrics (see the module docstring).

    Parameters:
      host(str): Interface of the exposition server (settings: ``HERALD_METRICS_HOST``;
        default 127.0.0.1).
      port(int): Its port (settings: ``HERALD_METRICS_PORT``; default 9191). ``0``
        disables the exposition and the multiprocess metrics altogether.
      multiproc_dir(str): Where worker processes write their values (settings:
        ``PROMETHEUS_MULTIPROC_DIR``; default ``<tmp>/herald-metrics/<port>``).
      registry(CollectorRegistry): Create the metrics at once in this registry, in
        this process, and serve nothing (tests, embedding). ``None``: multiprocess
        metrics created at process boot.
      expose(bool): Serve the endpoint under the StubBroker too (default: only for
        real brokers).
    """

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | None = None,
        multiproc_dir: str | None = None,
        registry: Any = None,
        expose: bool | None = None,
    ) -> None:
        self.host = host or catalogue.DEFAULT_METRICS_HOST
        self.port = catalogue.DEFAULT_WORKER_METRICS_PORT if port is None else port
        self.multiproc_dir = multiproc_dir
        self.expose = expose
        self.metrics: catalogue.WorkerMetrics | None = None
        self._starts: dict[str, float] = {}
        self._starts_lock = threading.Lock()
        self._lock_files: list[Any] = []
        self._server: Any = None
        self._server_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._multiprocess = False  # this process writes metric files (multiproc_dir)
        if registry is not None:
            self.metrics = catalogue.create_worker_metrics(registry)
            catalogue.init_worker_labels(self.metrics)
            _activate(self.metrics)

    # -- boot and shutdown -----------------------------------------------------------

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        if self.metrics is not None or self.port == 0:
            return
        if isinstance(broker, StubBroker) and not self.expose:
            return
        path = Path(self.multiproc_dir or default_multiproc_dir(self.port))
        self.multiproc_dir = str(path)
        self._lock_files.append(prepare_directory(path))
        self.metrics = create_multiprocess_metrics(path)
        self._multiprocess = True
        catalogue.init_worker_labels(self.metrics, actor_queues(broker))
        _activate(self.metrics)
        if not self._try_serve():
            self._server_thread = threading.Thread(
                target=self._serve_when_free, name="herald-metrics-standby", daemon=True
            )
            self._server_thread.start()

    def before_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        # Actors imported after the broker (``dramatiq actors extra_module``) are known now.
        if self.metrics is not None:
            catalogue.init_worker_labels(self.metrics, actor_queues(broker))

    def after_declare_actor(self, broker: dramatiq.Broker, actor: dramatiq.Actor) -> None:
        if self.metrics is not None:
            catalogue.init_worker_labels(self.metrics, {actor.actor_name: q_name(actor.queue_name)})

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        # After the worker threads stopped, so no in-flight attempt updates a file we drop.
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._multiprocess:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiproc_dir)
        for handle in self._lock_files:
            handle.close()  # releases its flock
        self._lock_files.clear()

    # -- message hooks ---------------------------------------------------------------

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        if self.metrics is None:
            return
        batch = _batch(broker, message)
        with self._starts_lock:
            self._starts[message.message_id] = time.perf_counter()
        if batch is None:
            self.metrics.running.labels(*_labels(message)).inc()
        else:
            self.metrics.running.labels(*batch[0]).inc(batch[1])

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if self.metrics is None:
            return
        labels = _labels(message)
        started = self._forget(message)
        batch = _batch(broker, message)
        if batch is not None:
            # Its jobs were counted one by one (record_batch); the message itself only
            # when it failed as a whole (the ledger unreachable, a malformed message).
            if started is not None:
                self.metrics.running.labels(*batch[0]).dec(batch[1])
            if exception is not None:
                (self.metrics.failed if message.failed else self.metrics.retried).labels(
                    *labels
                ).inc()
            return
        if started is not None:
            self.metrics.running.labels(*labels).dec()
            self.metrics.duration.labels(*labels).observe(time.perf_counter() - started)
        if exception is None:
            self.metrics.completed.labels(*labels).inc()
        elif message.failed:
            self.metrics.failed.labels(*labels).inc()
            if message.actor_name == DELIVERY_ACTOR:
                self.metrics.deliveries.labels(status="failed").inc()
        elif getattr(exception, "is_deferral", False):
            # Put off (breaker open, rate limited): no retry spent, so not a retry here either.
            self.metrics.deferred.labels(*labels).inc()
        else:
            self.metrics.retried.labels(*labels).inc()

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.MessageProxy) -> None:
        # A skip raised before our before-hook ran (periodiq, the ledger) has no start
        # recorded: running was never incremented, so it must not be decremented.
        if self.metrics is None:
            return
        if self._forget(message) is not None:
            batch = _batch(broker, message)
            if batch is None:
                self.metrics.running.labels(*_labels(message)).dec()
            else:
                self.metrics.running.labels(*batch[0]).dec(batch[1])

    def _forget(self, message: dramatiq.MessageProxy) -> float | None:
        with self._starts_lock:
            return self._starts.pop(message.message_id, None)

    # -- the exposition server ---------------------------------------------------------

    def _try_serve(self) -> bool:
        """Take the server lock without waiting; the winner starts the endpoint."""
        assert self.multiproc_dir is not None
        handle = Path(self.multiproc_dir, SERVER_LOCK).open("a+")  # noqa: SIM115 - held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        try:
            self._server = start_exposition_server(self.host, self.port, self.multiproc_dir)
        except OSError as error:
            handle.close()
            logger.error("Cannot serve metrics on %s:%d: %s", self.host, self.port, error)
            return False
        self._lock_files.append(handle)  # held for the life of this process
        logger.info("Serving Herald metrics on http://%s:%d/metrics", self.host, self.port)
        return True

    def _serve_when_free(self) -> None:
        while not self._stopping.wait(SERVER_RETRY_SECONDS):
            if self._try_serve():
                return


def actor_queues(broker: dramatiq.Broker) -> dict[str, str]:
    """Actor name -> canonical queue name, for every actor declared on ``broker``."""
    return {
        name: q_name(broker.get_actor(name).queue_name) for name in broker.get_declared_actors()
    }


def _labels(message: dramatiq.MessageProxy) -> tuple[str, str]:
    return message.actor_name, q_name(message.queue_name)


def _batch(
    broker: dramatiq.Broker, message: dramatiq.MessageProxy
) -> tuple[tuple[str, str], int] | None:
    """For a message carrying a batch of another actor's jobs (`batch_of`): that actor's
    labels and how many jobs; None for any other message."""
    try:
        member = broker.get_actor(message.actor_name).options.get("batch_of")
    except dramatiq.errors.ActorNotFound:
        return None
    if not member:
        return None
    ids = message.args[0] if len(message.args) == 1 else None
    count = len(ids) if isinstance(ids, list) else 0
    return (member, q_name(message.queue_name)), count


def _activate(metrics: catalogue.WorkerMetrics) -> None:
    global _active
    _active = metrics
