"""The send_email actor: render and send one notification to one recipient, once."""

from __future__ import annotations

import dramatiq

from actors import runtime
from actors.deferral import deferring
from actors.options import options_for
from monitoring.prometheus import record_delivery
from orchestrator.deliver import send_notification_email


@dramatiq.actor(queue_name="email", ledger=True, **options_for("send_email"))
def send_email(job_id: int) -> None:
    rt = runtime.runtime()
    with deferring():  # smtp circuit open or rate limit reached: put off, no retry spent
        outcome = send_notification_email(rt.pool, rt.settings, rt.mailer, job_id)
    record_delivery(outcome)
