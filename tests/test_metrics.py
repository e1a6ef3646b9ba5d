"""Herald's Prometheus middleware on Dramatiq's StubBroker, with a fresh registry per test.

The middleware sits where Herald's broker puts it (after a skipping middleware, before
Retries), and every figure is read back from the registry it was given.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, Retries, SkipMessage
from prometheus_client import CollectorRegistry

from monitoring import metrics
from monitoring.prometheus import Prometheus, record_delivery, record_tokens


class SkipWhenAsked(Middleware):
    """Skips messages whose first argument is "skip", like periodiq or the ledger do."""

    def before_process_message(
        self, broker: dramatiq.Broker, message: dramatiq.MessageProxy
    ) -> None:
        if message.args and message.args[0] == "skip":
            raise SkipMessage("asked to")


@dataclass
class Harness:
    broker: StubBroker
    worker: dramatiq.Worker
    registry: CollectorRegistry

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        assert found is not None, f"{name}{labels} is absent"
        return found

    def counts(self, actor: str, queue: str) -> dict[str, float]:
        labels = {"actor": actor, "queue": queue}
        return {
            "completed": self.value(metrics.JOBS_COMPLETED, **labels),
            "retried": self.value(metrics.JOBS_RETRIED, **labels),
            "failed": self.value(metrics.JOBS_FAILED, **labels),
            "running": self.value(metrics.JOBS_RUNNING, **labels),
            "attempts timed": self.value(f"{metrics.JOB_DURATION}_count", **labels),
        }

    def run(self, queue: str) -> None:
        self.broker.join(queue, fail_fast=False)
        self.worker.join()


@pytest.fixture
def harness() -> Iterator[Harness]:
    registry = CollectorRegistry()
    broker = StubBroker(
        middleware=[SkipWhenAsked(), Prometheus(registry=registry), Retries(min_backoff=1)]
    )
    broker.emit_after("process_boot")  # must not open a port or touch a directory
    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=2)
    worker.start()
    try:
        yield Harness(broker, worker, registry)
    finally:
        worker.stop()
        broker.close()


def test_one_successful_attempt_is_counted_once(harness: Harness) -> None:
    @dramatiq.actor(broker=harness.broker, queue_name="work")
    def job(_arg: str) -> None:
        pass

    job.send("go")
    harness.run("work")

    assert harness.counts("job", "work") == {
        "completed": 1, "retried": 0, "failed": 0, "running": 0, "attempts timed": 1,
    }  # fmt: skip


def test_a_retried_job_counts_one_retry_then_one_completion(harness: Harness) -> None:
    attempts = []

    @dramatiq.actor(broker=harness.broker, queue_name="work", max_retries=3, min_backoff=1)
    def flaky(_arg: str) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    flaky.send("go")
    harness.run("work")

    # The retry went through work.DQ, yet nothing is labelled with a delay queue.
    assert harness.counts("flaky", "work") == {
        "completed": 1, "retried": 1, "failed": 0, "running": 0, "attempts timed": 2,
    }  # fmt: skip
    queues = {s.labels["queue"] for m in harness.registry.collect() for s in m.samples
              if "queue" in s.labels}  # fmt: skip
    assert not any(q.endswith((".DQ", ".XQ")) for q in queues), queues


def test_a_job_that_fails_for_good_counts_failed_once(harness: Harness) -> None:
    @dramatiq.actor(broker=harness.broker, queue_name="work", max_retries=1, min_backoff=1)
    def doomed(_arg: str) -> None:
        raise RuntimeError("always")

    class Permanent(Exception):
        pass

    @dramatiq.actor(broker=harness.broker, queue_name="email", throws=(Permanent,))
    def send_email(_arg: str) -> None:
        raise Permanent("550 no such user")

    doomed.send("go")
    send_email.send("go")
    harness.run("work")
    harness.run("email")

    assert harness.counts("doomed", "work") == {
        "completed": 0, "retried": 1, "failed": 1, "running": 0, "attempts timed": 2,
    }  # fmt: skip
    assert harness.counts("send_email", "email") == {
        "completed": 0, "retried": 0, "failed": 1, "running": 0, "attempts timed": 1,
    }  # fmt: skip
    # A send_email job failed for good is a failed delivery.
    assert harness.value(metrics.DELIVERIES, status="failed") == 1


def test_a_message_skipped_by_an_earlier_middleware_leaves_running_at_zero(
    harness: Harness,
) -> None:
    @dramatiq.actor(broker=harness.broker, queue_name="work")
    def job(_arg: str) -> None:
        pass

    for _ in range(3):
        job.send("skip")
    harness.run("work")

    assert harness.counts("job", "work") == {
        "completed": 0, "retried": 0, "failed": 0, "running": 0, "attempts timed": 0,
    }  # fmt: skip


def test_a_message_skipped_by_a_later_middleware_gives_back_its_running_slot() -> None:
    registry = CollectorRegistry()
    broker = StubBroker(middleware=[Prometheus(registry=registry), SkipWhenAsked()])
    worker = dramatiq.Worker(broker, worker_timeout=20, worker_threads=1)
    worker.start()
    try:

        @dramatiq.actor(broker=broker, queue_name="work")
        def job(_arg: str) -> None:
            pass

        job.send("skip")
        broker.join("work", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
        broker.close()
    harness = Harness(broker, worker, registry)
    assert harness.counts("job", "work")["running"] == 0
    assert harness.counts("job", "work")["completed"] == 0


def test_every_known_actor_has_every_series_at_zero_before_any_message(harness: Harness) -> None:
    @dramatiq.actor(broker=harness.broker, queue_name="late")
    def declared_later(_arg: str) -> None:
        pass

    expected = {**metrics.KNOWN_ACTORS, "declared_later": "late"}
    for actor, queue in expected.items():
        for name in (metrics.JOBS_COMPLETED, metrics.JOBS_RETRIED, metrics.JOBS_FAILED,
                     metrics.JOBS_RUNNING, f"{metrics.JOB_DURATION}_count"):  # fmt: skip
            assert harness.value(name, actor=actor, queue=queue) == 0, (name, actor)
    for status in metrics.DELIVERY_STATUSES:
        assert harness.value(metrics.DELIVERIES, status=status) == 0
    for kind in metrics.TOKEN_KINDS:
        assert harness.value(metrics.AI_TOKENS, kind=kind) == 0


def test_deliveries_and_ai_tokens_are_counted_by_the_actors_helpers(harness: Harness) -> None:
    from herald.email.deliver import DeliveryOutcome

    record_delivery(DeliveryOutcome("sent"))
    record_delivery(DeliveryOutcome("sent", ambiguous=True))
    record_delivery(DeliveryOutcome("already_sent"))  # nothing was sent this time
    record_delivery(DeliveryOutcome("skipped"))
    record_tokens(120, 30)

    assert harness.value(metrics.DELIVERIES, status="sent") == 1
    assert harness.value(metrics.DELIVERIES, status="ambiguous") == 1
    assert harness.value(metrics.AI_TOKENS, kind="prompt") == 120
    assert harness.value(metrics.AI_TOKENS, kind="completion") == 30


def test_herald_puts_the_middleware_after_the_ledger_and_before_retries() -> None:
    from actors.broker import middleware
    from actors.ledger_middleware import Ledger
    from herald.config import Settings

    kinds = [type(m) for m in middleware(Settings(), pool=None)]  # type: ignore[arg-type]
    assert kinds.index(Ledger) < kinds.index(Prometheus) < kinds.index(Retries)


def test_a_deferral_is_counted_as_deferred_not_as_a_retry(harness: Harness) -> None:
    from actors.deferral import Deferred

    calls = []

    @dramatiq.actor(broker=harness.broker, queue_name="work")
    def job(_arg: str) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Deferred("smtp circuit open", delay=1)

    job.send("go")
    harness.run("work")

    labels = {"actor": "job", "queue": "work"}
    assert harness.value(metrics.JOBS_DEFERRED, **labels) == 1
    assert harness.value(metrics.JOBS_RETRIED, **labels) == 0
    assert harness.value(metrics.JOBS_COMPLETED, **labels) == 1
