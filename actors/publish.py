"""Publishing ledger jobs as Dramatiq messages: ids only, the ledger's message id, priority."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dramatiq

from orchestrator.ledger import JobRef

logger = logging.getLogger(__name__)


def message_for(ref: JobRef) -> dramatiq.Message:
    """The message for a job. It carries the job id and nothing personal or secret."""
    return dramatiq.Message(
        queue_name=ref.queue,
        actor_name=ref.actor,
        args=(ref.id,),
        kwargs={},
        options={"broker_priority": ref.priority},
        message_id=ref.message_id,
    )


def publish(refs: Sequence[JobRef]) -> list[int]:
    """Enqueue each job's message on the current broker; stop at the first failure.

    Jobs not published stay unpublished in the ledger and are published again by a
    later orchestrator or sweeper run (the ledger is the outbox).
    """
    broker = dramatiq.get_broker()
    done: list[int] = []
    for ref in refs:
        try:
            broker.enqueue(message_for(ref))
        except Exception as exc:  # noqa: BLE001 - reported, and the outbox retries
            logger.error("Could not publish job %d (%s); it will be republished", ref.id, exc)
            break
        done.append(ref.id)
    return done
