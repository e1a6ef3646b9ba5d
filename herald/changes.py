"""A change-log row as the services see it, and the checks a change must pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.errors import PermanentError

#: Changes bigger than this (key, old and new row, as JSON text in bytes) are refused with
#: a clear error rather than loaded, rendered or sent to the AI: a runaway row must not
#: stall a worker. `[limits] max_change_bytes` overrides it.
MAX_CHANGE_BYTES = 1_000_000
#: Changes nested deeper than this (arrays and objects, the row itself counting one) are
#: refused likewise: psycopg's JSON decoder recurses once per level and raises
#: RecursionError near 1,000. `[limits] max_change_depth` overrides it.
MAX_CHANGE_DEPTH = 64
#: The change-log columns measured before a change is loaded, as lock_changes names them.
_MEASURED = (("row_pk", "pk"), ("old_row", "old"), ("new_row", "new"))


@dataclass(frozen=True)
class Change:
    id: int
    table_name: str
    operation: str
    row_pk: dict[str, Any] | None
    old_row: dict[str, Any] | None
    new_row: dict[str, Any] | None
    changed_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Change:
        return cls(
            id=row["id"],
            table_name=row["table_name"],
            operation=row["operation"],
            row_pk=row["row_pk"],
            old_row=row["old_row"],
            new_row=row["new_row"],
            changed_at=row["changed_at"],
        )

    def as_data(self) -> dict[str, Any]:
        """The change as plain data (what the AI step sees, after aliasing)."""
        return {
            "table": self.table_name,
            "operation": self.operation,
            "key": self.row_pk,
            "old_row": self.old_row,
            "new_row": self.new_row,
        }


def check_shape(
    change_id: int, operation: str, old_row_type: str | None, new_row_type: str | None
) -> None:
    """Raise PermanentError naming what is wrong with a malformed change, told by the JSON
    types of its rows (jsonb_typeof; None when absent), so the rows need not be loaded.

    Size and depth are measured before any of it is loaded (`over_limits`).
    """
    if operation not in ("INSERT", "UPDATE", "DELETE"):
        raise PermanentError(f"change {change_id}: unknown operation {operation!r}")
    for name, kind in (("old_row", old_row_type), ("new_row", new_row_type)):
        if kind is not None and kind != "object":
            raise PermanentError(f"change {change_id}: {name} is not a JSON object")
    if operation != "DELETE" and new_row_type is None:
        raise PermanentError(f"change {change_id}: {operation} without a new row")
    if operation != "INSERT" and old_row_type is None:
        raise PermanentError(f"change {change_id}: {operation} without an old row")


def over_limits(measures: Mapping[str, Any], *, max_bytes: int, max_depth: int) -> str | None:
    """Why a change measured by lock_changes is refused unloaded, or None when it is within
    the limits. `measures` holds its id, `pk_bytes`, `old_bytes`, `new_bytes` and
    `too_deep` (the first column nested deeper than `max_depth`, or None)."""
    change_id = measures["id"]
    sizes = {column: measures[f"{short}_bytes"] or 0 for column, short in _MEASURED}
    total = sum(sizes.values())
    if total > max_bytes:
        column = max(sizes, key=lambda c: sizes[c])
        return (
            f"change {change_id} is too large: {column} is {_size(sizes[column])} "
            f"({_size(total)} of row data in all), over the {_size(max_bytes)} limit "
            "([limits] max_change_bytes); not loaded or sent"
        )
    if measures["too_deep"] is not None:
        return (
            f"change {change_id}: {measures['too_deep']} is nested more than {max_depth} "
            f"levels deep, over the limit of {max_depth} ([limits] max_change_depth); "
            "not loaded or sent"
        )
    return None


def _size(n: int) -> str:
    """Bytes for people: 10.5 MB, 12.3 kB, 512 bytes."""
    for unit, scale in (("MB", 1_000_000), ("kB", 1_000)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"
