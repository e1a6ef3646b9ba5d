"""A change-log row as the services see it, and the checks a change must pass."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.errors import PermanentError

#: Changes bigger than this (old and new row, as JSON) are refused with a clear error
#: rather than rendered or sent to the AI: a runaway row must not stall a worker.
MAX_CHANGE_BYTES = 1_000_000


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


def check_change(change: Change, *, max_bytes: int = MAX_CHANGE_BYTES) -> None:
    """Raise PermanentError naming what is wrong with a malformed change."""
    if change.operation not in ("INSERT", "UPDATE", "DELETE"):
        raise PermanentError(f"change {change.id}: unknown operation {change.operation!r}")
    for name, value in (("old_row", change.old_row), ("new_row", change.new_row)):
        if value is not None and not isinstance(value, dict):
            raise PermanentError(f"change {change.id}: {name} is not a JSON object")
    if change.operation != "DELETE" and change.new_row is None:
        raise PermanentError(f"change {change.id}: {change.operation} without a new row")
    if change.operation != "INSERT" and change.old_row is None:
        raise PermanentError(f"change {change.id}: {change.operation} without an old row")
    size = len(json.dumps(change.old_row)) + len(json.dumps(change.new_row))
    if size > max_bytes:
        raise PermanentError(
            f"change {change.id} is too large: {size:,} bytes of row data "
            f"(limit {max_bytes:,}); not sent"
        )
