"""Declares every Herald actor on a broker, with the services they run with."""

from __future__ import annotations

from dataclasses import dataclass

import dramatiq

from actors import digest, email, enrich, enrich_batch, orchestrate, purge, sweep
from actors.publish import Publisher
from actors.waker import WakerMiddleware
from herald.services import Services


@dataclass(frozen=True)
class Actors:
    """Herald's actors as declared on one broker (send a message with `.send()`)."""

    orchestrate: dramatiq.Actor
    enrich: dramatiq.Actor
    enrich_batch: dramatiq.Actor
    send_email: dramatiq.Actor
    send_emails: dramatiq.Actor
    sweep: dramatiq.Actor
    purge: dramatiq.Actor
    digest_tick: dramatiq.Actor
    send_digest: dramatiq.Actor


def declare_actors(broker: dramatiq.Broker, services: Services, publish: Publisher) -> Actors:
    """Declare the actors on `broker`; the waker middleware too, unless it is turned off."""
    send_email, send_emails = email.declare(broker, services, publish)
    digest_tick, send_digest = digest.declare(broker, services, publish)
    enrich_one = enrich.declare(broker, services, publish)
    actors = Actors(
        orchestrate=orchestrate.declare(broker, services, publish),
        enrich=enrich_one,
        enrich_batch=enrich_batch.declare(broker, services, publish, enrich_one),
        send_email=send_email,
        send_emails=send_emails,
        sweep=sweep.declare(broker, services, publish),
        purge=purge.declare(broker, services),
        digest_tick=digest_tick,
        send_digest=send_digest,
    )
    if services.settings.waker:  # the LISTEN/NOTIFY waker (actors/waker.py)
        broker.add_middleware(
            WakerMiddleware(services.settings.database_url, actors.orchestrate.send)
        )
    return actors
