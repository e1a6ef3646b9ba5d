"""One change-log row as the email stage sees it, and which of its columns changed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.errors import PermanentError

__all__ = ["OPERATIONS", "ChangeView", "FieldChange", "canonical"]

OPERATIONS = frozenset({"INSERT", "UPDATE", "DELETE"})


@dataclass(frozen=True)
class FieldChange:
    """One column as shown in an email: ``old`` is None for INSERT, ``new`` for DELETE."""

    name: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ChangeView:
    """One ``herald.change_log`` row, as the renderer needs it."""

    change_id: int
    table: str
    operation: str
    row_pk: dict[str, Any]
    old_row: dict[str, Any] | None
    new_row: dict[str, Any] | None
    changed_at: datetime
    #: The table's column order when the caller knows it (jsonb keeps keys in its own
    #: order); columns not listed follow in the row's order.
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # A malformed row must fail with a reason, not halfway through a template.
        if self.operation not in OPERATIONS:
            raise PermanentError(f"change {self.change_id}: unknown operation {self.operation!r}")
        for name in ("row_pk", "old_row", "new_row"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise PermanentError(
                    f"change {self.change_id}: {name} is {type(value).__name__}, not an object"
                )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ChangeView:
        """Build from a change_log row (keys ``id``, ``table_name``, ``operation``, ...)."""
        try:
            return cls(
                change_id=int(record["id"]),
                table=str(record["table_name"]),
                operation=str(record["operation"]),
                row_pk=dict(record.get("row_pk") or {}),
                old_row=record.get("old_row"),
                new_row=record.get("new_row"),
                changed_at=record["changed_at"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentError(f"malformed change record: {exc!r}") from exc

    @property
    def column_names(self) -> list[str]:
        """Every column of the old and new row, in the table's order."""
        present = dict.fromkeys([*(self.new_row or {}), *(self.old_row or {})])
        if not self.columns:
            return list(present)
        known = [c for c in self.columns if c in present]
        listed = set(known)
        return known + [c for c in present if c not in listed]

    @property
    def fields(self) -> list[FieldChange]:
        """UPDATE: only the fields whose value changed; INSERT/DELETE: every field."""
        old = self.old_row or {}
        new = self.new_row or {}
        names = self.column_names
        if self.operation == "INSERT":
            return [FieldChange(name, None, new[name]) for name in names]
        if self.operation == "DELETE":
            return [FieldChange(name, old[name], None) for name in names]
        return [
            FieldChange(name, old.get(name), new.get(name))
            for name in names
            if not _same(old.get(name), new.get(name))
        ]


def _same(a: Any, b: Any) -> bool:
    """JSON equality: ``True`` is not ``1`` and ``1`` is not ``1.0``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict | list):
        return canonical(a) == canonical(b)
    return bool(a == b)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=repr)
