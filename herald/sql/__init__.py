"""Herald's SQL, kept in `.sql` files and loaded by name (as procrastinate does).

`queries.sql` (and any other `<topic>.sql` beside it, e.g. `breakers.sql`) holds the
queries the services run, each introduced by a `-- name: <query_name>` line;
`migrations/NNNN_<what>.sql` build the schema step by step, and `schema.sql` is the
schema they add up to, written out whole (a test checks that they agree).
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of `-- name:` sections into {name: sql}."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip()
    return queries


def _load_queries() -> dict[str, str]:
    """Every named query of every `.sql` file here except the schema; names must be unique."""
    folder = resources.files(__package__)
    merged: dict[str, str] = {}
    for name in sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql")):
        if name == "schema.sql":
            continue
        for query, text in parse_queries(_read(name)).items():
            if query in merged:
                raise ValueError(f"query {query!r} is defined twice ({name})")
            merged[query] = text
    return merged


queries: dict[str, str] = _load_queries()


def migrations() -> list[tuple[str, str]]:
    """(name, sql) of every migration, in order."""
    folder = resources.files(__package__).joinpath("migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(n.removesuffix(".sql"), folder.joinpath(n).read_text(encoding="utf-8")) for n in names]


def schema() -> str:
    return _read("schema.sql")
