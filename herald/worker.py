"""The worker's and the scheduler's entry point: `dramatiq herald.worker:setup` and
`periodiq herald.worker:setup`.

Dramatiq imports this module in each worker process and calls `setup`, which builds
Herald from the environment (`herald.bootstrap`) and makes its broker the one Dramatiq
runs. Only this entry point sets Dramatiq's global broker.
"""

from __future__ import annotations

import dramatiq

from herald.bootstrap import bootstrap
from herald.config import load_settings
from herald.redact import scrub_logging, secrets_of


def setup() -> dramatiq.Broker:
    """Build Herald for this worker process; Dramatiq then runs its broker."""
    settings = load_settings()
    # A safety net: every line this process logs has the configured credentials masked.
    scrub_logging(
        secrets_of(
            settings.database_url,
            settings.broker_url,
            settings.smtp_url,
            settings.openai_base_url,
            keys=[settings.openai_api_key],
        )
    )
    app = bootstrap(settings)
    dramatiq.set_broker(app.broker)
    return app.broker
