"""One `[[routes]]` entry of herald.toml: which changes it takes and how they are sent.

The first route that matches a change wins (orchestrator/routing.py). What can be checked
on the value alone is checked here; whether a route's templates compile is the email
stage's check at start (herald.templating.check_route_templates).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from annotated_types import Interval
from pydantic import AfterValidator, BeforeValidator, Strict, StringConstraints, model_validator

from herald.config.values import (
    ColumnNames,
    EmailAddress,
    Flag,
    Must,
    NonNegativeInt,
    Synonyms,
    section,
)
from herald.schedules import parse_schedule, zone

Priority = Literal["urgent", "normal", "low"]
Mode = Literal["immediate", "digest"]
Operation = Literal["INSERT", "UPDATE", "DELETE"]
OnAiFailure = Literal["send", "hold"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
MODES: tuple[Mode, ...] = get_args(Mode)
OPERATIONS: tuple[Operation, ...] = get_args(Operation)
ON_AI_FAILURE: tuple[OnAiFailure, ...] = get_args(OnAiFailure)

#: A route's `template`: the triplet `<name>.subject.txt`, `<name>.txt`, `<name>.html`.
DEFAULT_TEMPLATE = "notification"
TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: A digest route's defaults: its calendar, and the notifications one digest lists.
DEFAULT_DIGEST = "daily 09:00"
DEFAULT_DIGEST_MAX_ITEMS = 20
MAX_DIGEST_ITEMS = 200
#: Options only a digest route takes.
DIGEST_OPTIONS = ("digest", "digest_timezone", "digest_max_items")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _any_table(value: str) -> str:
    return value or "*"


def _schedule(value: str) -> str:
    """The calendar in its canonical spelling; a ScheduleError (a ValueError) says why not."""
    return str(parse_schedule(value))


def _timezone(value: str) -> str:
    zone(value)  # raises ScheduleError naming the zone
    return value


TableName = Annotated[
    str, Strict(), AfterValidator(_any_table), Must('a table name, or "*" for any table')
]
Operations = Annotated[
    tuple[Annotated[Operation, BeforeValidator(_upper)], ...],
    Must(f"a list of {', '.join(OPERATIONS)}"),
]
Recipients = Annotated[tuple[EmailAddress, ...], Must("a list of email addresses")]
Subject = Annotated[
    str, Strict(), StringConstraints(pattern=r"\S"), Must("a non-empty Jinja2 template string")
]
LabelField = Annotated[str, Strict(), StringConstraints(min_length=1), Must("a column name")]
TemplateName = Annotated[
    str,
    Strict(),
    StringConstraints(pattern=f"^{TEMPLATE_NAME.pattern}$"),
    Must(
        "a template name (a-z, 0-9, _ and -; its files are <name>.subject.txt, <name>.txt "
        "and <name>.html)"
    ),
]
Schedule = Annotated[
    str,
    Strict(),
    AfterValidator(_schedule),
    Must("a schedule such as 'daily 09:00', 'weekly mon 09:00' or 'monthly 31 09:00'"),
]
Timezone = Annotated[
    str, Strict(), AfterValidator(_timezone), Must("an IANA timezone name such as 'Europe/London'")
]
DigestItems = Annotated[
    int,
    Strict(),
    Interval(ge=1, le=MAX_DIGEST_ITEMS),
    Must(f"an integer from 1 to {MAX_DIGEST_ITEMS}"),
]
RouteName = Annotated[str, Strict(), Must("text")]


@section
class Route:
    """One `[[routes]]` entry; the first route that matches a change wins."""

    #: Unnamed in herald.toml: `routes[<index>]` (herald/config/document.py names it).
    name: RouteName
    table: TableName = "*"
    operations: Operations = OPERATIONS
    recipients: Recipients = ()
    ai: Flag = False
    priority: Priority = "normal"
    mode: Mode = "immediate"
    debounce_seconds: NonNegativeInt = 0
    debounce_max_seconds: NonNegativeInt | None = None
    on_ai_failure: OnAiFailure = "send"
    #: More column names to alias on this route, by alias type (`{phone = ["handy"]}`),
    #: on top of `[ai] pii_synonyms`; see herald/enrich/pii_fields.py.
    pii_synonyms: Synonyms = dataclasses.field(default_factory=dict, hash=False)
    #: A sandboxed Jinja2 subject (herald/email/subject.py); None: the default in words.
    subject: Subject | None = None
    #: The column that names a row in subjects and bodies; None: title, name, ..., id.
    label_field: LabelField | None = None
    #: The template triplet: `<template>.subject.txt`, `.txt` and `.html`.
    template: TemplateName = DEFAULT_TEMPLATE
    #: Columns of the changed row holding more recipients (the old row's for a DELETE).
    recipient_fields: ColumnNames = ()
    #: mode = "digest": the default calendar (`daily 09:00`, `weekly mon 09:00`,
    #: `monthly 31 09:00`; herald/schedules.py), its timezone (a recipient's own
    #: timezone wins) and how many notifications one digest lists.
    digest: Schedule | None = None
    digest_timezone: Timezone = "UTC"
    digest_max_items: DigestItems = DEFAULT_DIGEST_MAX_ITEMS

    @model_validator(mode="before")
    @classmethod
    def _digest_options_need_digest_mode(cls, data: Any) -> Any:
        """Read from herald.toml (a mapping), a digest option on an immediate route."""
        if isinstance(data, Mapping) and data.get("mode", "immediate") == "immediate":
            given = [k for k in DIGEST_OPTIONS if k in data]
            if given:
                verb = "needs" if len(given) == 1 else "need"
                raise ValueError(f'{", ".join(given)} {verb} mode = "digest"')
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Route:
        if self.debounce_max_seconds is not None and self.debounce_max_seconds < (
            self.debounce_seconds
        ):
            raise ValueError(
                f"debounce_max_seconds must be an integer >= debounce_seconds "
                f"({self.debounce_seconds}), not {self.debounce_max_seconds}"
            )
        if self.mode == "digest":
            if self.debounce_seconds:
                raise ValueError('mode = "digest" collects changes already; drop debounce_seconds')
            if self.digest is None:
                object.__setattr__(self, "digest", DEFAULT_DIGEST)  # frozen: set once, here
        return self

    @property
    def debounce_window_max(self) -> int:
        """Constant churn still sends: at the latest this long after a row's first change."""
        if self.debounce_max_seconds is not None:
            return self.debounce_max_seconds
        return 10 * self.debounce_seconds

    def matches(self, table_name: str, operation: str) -> bool:
        table_ok = self.table in ("*", table_name) or table_name.endswith("." + self.table)
        return table_ok and operation in self.operations


def route_label(index: int, raw: object) -> str:
    """What names the route at `index` of herald.toml: its name, else `routes[<index>]`."""
    name = raw.get("name") if isinstance(raw, Mapping) else None
    return name if isinstance(name, str) and name else f"routes[{index}]"


def named_routes(routes: object) -> object:
    """herald.toml's `[[routes]]` with each unnamed route named by its position."""
    if not isinstance(routes, list | tuple):
        return routes  # refused as it is: "routes must be an array of tables"
    return [
        {**r, "name": route_label(i, r)} if isinstance(r, Mapping) and not r.get("name") else r
        for i, r in enumerate(routes)
    ]
