"""Reading `POST /api/changes`' body safely: size, JSON, depth, text PostgreSQL accepts.

Parsed by hand rather than by FastAPI: Python's JSON parser recurses once per level (a
deeply nested body would raise RecursionError, a 500), and PostgreSQL's jsonb refuses
NUL characters, lone surrogates and NaN that Python's parser lets through.
"""

from __future__ import annotations

import json
import math
from typing import Any

from herald.config import LimitSettings
from herald.web.problems import Problem

#: The body as sent: the rows' limit ([limits] max_change_bytes) plus this much.
BODY_SLACK_BYTES = 64 * 1024
IDENTIFIER_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_$")
OPERATIONS = ("INSERT", "UPDATE", "DELETE")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON for PostgreSQL")


def max_body_bytes(limits: LimitSettings) -> int:
    return limits.max_change_bytes + BODY_SLACK_BYTES


def parse_body(raw: bytes, limits: LimitSettings) -> dict[str, Any]:
    if len(raw) > max_body_bytes(limits):
        raise Problem(413, f"the body is larger than {max_body_bytes(limits):,} bytes")
    try:
        doc = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise Problem(400, "the JSON nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict):
        raise Problem(422, "the body must be a JSON object")
    return doc


def _check_value(value: Any, where: str, max_depth: int) -> None:
    """Depth (a flat object is 1, as the orchestrator counts), NUL and lone surrogates,
    walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise Problem(422, f"{where} nests deeper than {max_depth} levels")
            children = list(item.items()) if isinstance(item, dict) else list(enumerate(item))
            for key, child in children:
                if isinstance(key, str):
                    _check_text(key, where)
                stack.append((child, depth + 1))
        elif isinstance(item, str):
            _check_text(item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            raise Problem(422, f"{where} holds a number PostgreSQL cannot store")


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise Problem(422, f"{where} holds a NUL character, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Problem(422, f"{where} holds a lone surrogate (not valid Unicode)") from None


def check_table(name: Any) -> str:
    """`table` or `schema.table`: plain identifiers (letters, digits, _ and $, not a digit
    first), at most 63 characters each, as PostgreSQL names them unquoted."""
    if not isinstance(name, str):
        raise Problem(422, "table must be a string")
    parts = name.split(".")
    if len(parts) > 2 or not all(
        0 < len(p) <= 63 and not p[0].isdigit() and p[0] != "$" and set(p) <= IDENTIFIER_CHARS
        for p in parts
    ):
        raise Problem(
            422, "table must be a name like classes or public.classes (letters, digits, _)"
        )
    return name


def read_change(doc: dict[str, Any], limits: LimitSettings) -> dict[str, Any]:
    """The change to record: table, operation, new_row, old_row; 422 naming what is wrong.
    The limits are the orchestrator's ([limits]): what it would refuse is refused here."""
    unknown = set(doc) - {"table", "operation", "row", "old_row"}
    if unknown:
        raise Problem(422, f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
    table = check_table(doc.get("table"))
    operation = doc.get("operation")
    if operation not in OPERATIONS:
        raise Problem(422, "operation must be INSERT, UPDATE or DELETE")
    row, old_row = doc.get("row"), doc.get("old_row")
    for name, value in (("row", row), ("old_row", old_row)):
        if value is not None and not isinstance(value, dict):
            raise Problem(422, f"{name} must be a JSON object")
        if value is not None:
            _check_value(value, name, limits.max_change_depth)
    if operation != "DELETE" and row is None:
        raise Problem(422, f"{operation} needs row (the new row)")
    if operation != "INSERT" and old_row is None:
        raise Problem(422, f"{operation} needs old_row")
    if operation == "INSERT" and old_row is not None:
        raise Problem(422, "INSERT takes no old_row")
    if operation == "DELETE" and row is not None:
        raise Problem(422, "DELETE takes no row (the old row is old_row)")
    size = sum(len(json.dumps(v, ensure_ascii=False).encode()) for v in (row, old_row) if v)
    if size > limits.max_change_bytes:
        raise Problem(
            413, f"the rows are {size:,} bytes of JSON (limit {limits.max_change_bytes:,})"
        )
    return {"table": table, "operation": operation, "new_row": row, "old_row": old_row}
