"""Herald's Dramatiq layer. `dramatiq actors` runs the workers, `periodiq actors` the scheduler.

The broker is set up first (from HERALD_BROKER_URL), then every actor module is
imported so that its actor registers with it: `actors.orchestrate.orchestrate`,
`actors.enrich.enrich`, `actors.email.send_email`, `actors.sweep.sweep`.
"""

from actors import email, enrich, orchestrate, sweep  # noqa: E402, I001
from actors.broker import broker  # must come first: the actors below register with it

__all__ = ["broker", "email", "enrich", "orchestrate", "sweep"]
