"""Herald's Dramatiq layer. `dramatiq actors` runs the workers, `periodiq actors` the scheduler.

The broker is set up first (from HERALD_BROKER_URL), then every actor module is
imported so that its actor registers with it: `actors.orchestrate.orchestrate`,
`actors.enrich.enrich`, `actors.email.send_email`, `actors.sweep.sweep`.
"""

# isort: off
from actors.broker import broker  # must come first: the actors below register with it
from actors import email, enrich, orchestrate, purge, sweep
from actors import waker
# isort: on

broker.add_middleware(waker.WakerMiddleware())  # the LISTEN/NOTIFY waker (actors/waker.py)

__all__ = ["broker", "email", "enrich", "orchestrate", "purge", "sweep", "waker"]
