"""One line of `herald check`'s checklist, and the statuses it can have.

`ok`; `warn` (works, but probably not as meant: a route without recipients); `fail`
(Herald cannot work as configured: `herald check` exits non-zero); `skip` (not
applicable: AI off, the database unreachable).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

#: Seconds each network check may take (connect and answer).
TIMEOUT = 5.0
STATUSES = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class CheckResult:
    """One line of the checklist."""

    name: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def ok(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "ok", detail)


def warn(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "warn", detail)


def fail(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "fail", detail)


def skip(name: str, detail: str) -> CheckResult:
    return CheckResult(name, "skip", detail)


def failed(results: Iterable[CheckResult]) -> bool:
    return any(r.status == "fail" for r in results)


def first_line(exc: BaseException) -> str:
    """An error's first line (libpq adds hints on further lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
