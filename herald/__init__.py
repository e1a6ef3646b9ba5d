"""Herald: changes in PostgreSQL become emails people can act on.

This package holds the shared core (configuration, database and SQL, the job ledger,
circuit breakers and rate limits), the enrich stage (`herald.enrich`: PII aliasing and
the AI call), the email stage (`herald.email`: rendering, MIME and SMTP), and the entry
points on top (`herald.bootstrap`, the composition root; `herald.cli`; `herald.cli.demo`).
The orchestrator stage is the top-level `orchestrator` package, the Dramatiq layer
`actors`, and what operators watch `monitoring`.
"""
