"""Operator queries (`herald jobs`, `herald stats`), loaded by name from `inspect.sql`."""
from importlib import resources

from orchestrator.sql import parse_queries

queries = parse_queries(resources.files(__package__).joinpath("inspect.sql").read_text("utf-8"))
