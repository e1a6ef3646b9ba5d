"""Operator queries (`herald jobs`, `herald stats`), loaded by name from `inspect.sql`."""

from importlib import resources

from herald.sql import parse_queries

queries = parse_queries(resources.files(__package__).joinpath("inspect.sql").read_text("utf-8"))

#: The exporter's scrape-time queries (`herald metrics serve`), from `metrics.sql`.
metrics_queries = parse_queries(
    resources.files(__package__).joinpath("metrics.sql").read_text("utf-8")
)

#: The HTTP API's queries (`herald serve`, through monitoring/jobs_api.py), from `api.sql`.
api_queries = parse_queries(resources.files(__package__).joinpath("api.sql").read_text("utf-8"))
