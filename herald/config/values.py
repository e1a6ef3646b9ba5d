"""The value types Herald's configuration sections share, each saying what it must be.

Every section is a frozen pydantic dataclass that refuses unknown keys (`section`). A field's
type carries its bounds (annotated-types) and a `Must` phrase: when a value fails, the
message reads `<where> <option> must be <phrase>, not <value>` (herald/config/messages.py),
never pydantic's own wording. Values are strict (TOML is typed: `"20"` is not a number, nor
`true`); only lists become tuples.
"""

from __future__ import annotations

import dataclasses
from email.headerregistry import Address
from email.utils import getaddresses, parseaddr
from typing import Annotated, TypeVar, cast, dataclass_transform

from annotated_types import Ge, Gt
from pydantic import AfterValidator, ConfigDict, Field, Strict, StringConstraints
from pydantic.dataclasses import dataclass

from herald.errors import ConfigError
from herald.headers import FORBIDDEN_IN_HEADERS

T = TypeVar("T")

#: Sections refuse what they do not know; nested section values are taken as they are.
SECTION_CONFIG = ConfigDict(extra="forbid", revalidate_instances="never")


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field, Field))
def section(cls: type[T]) -> type[T]:
    """A configuration section: a frozen, validated dataclass refusing unknown keys."""
    return cast(type[T], dataclass(frozen=True, config=SECTION_CONFIG)(cls))


@dataclasses.dataclass(frozen=True)
class Must:
    """What a value must be, in words: `an integer from 1 to 200`."""

    text: str


class Unfit(ValueError):
    """Raised by a field's own validator: the value is not what the field's `Must` says
    (the message is then the `Must` one, as for a bound the type states)."""


#: Counts: whole numbers, never a bool or a float (a bounded one is written where it is used).
NonNegativeInt = Annotated[int, Strict(), Ge(0), Must("a non-negative integer")]
PositiveInt = Annotated[int, Strict(), Ge(1), Must("a positive integer")]

#: Seconds and rates: any number (an integer is taken as a float), never a bool.
Positive = Annotated[float, Strict(), Gt(0), Must("a number above 0")]
NonNegative = Annotated[float, Strict(), Ge(0), Must("a number, 0 or more")]


Flag = Annotated[bool, Strict(), Must("true or false")]
#: Non-empty text (at least one character that is not a space).
Text = Annotated[str, Strict(), StringConstraints(pattern=r"\S"), Must("non-empty text")]
#: A column name: non-empty, at most 128 characters, surrounding spaces dropped.
ColumnName = Annotated[
    str,
    Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128),
]
ColumnNames = Annotated[tuple[ColumnName, ...], Must("a list of column names (non-empty strings)")]
#: `{ phone = ["handy", "telefon"] }`: more column names to alias, by alias type.
Synonyms = Annotated[
    dict[ColumnName, ColumnNames],
    Must('a table of lists, e.g. { phone = ["handy", "telefon"] }'),
]


def address_problem(value: object) -> str | None:
    """Why `value` is not one email address (optionally with a display name), or None."""
    if not isinstance(value, str) or any(c in value for c in FORBIDDEN_IN_HEADERS):
        return f"invalid email address {value!r:.200}"
    name, addr = parseaddr(value)
    if "@" not in addr or len(getaddresses([value])) != 1:  # one address, never a list
        return f"invalid email address {value!r:.200}"
    local, _, domain = addr.rpartition("@")
    try:
        Address(display_name=name, username=local, domain=domain)
    except (ValueError, TypeError) as exc:
        return f"invalid email address {value!r:.200} ({exc})"
    if not local or not domain or "." not in domain and domain != "localhost" or " " in addr:
        return f"invalid email address {value!r:.200}"
    return None


def parse_address(value: str, *, where: str) -> str:
    """Validate one email address (optionally with a display name); return it normalised."""
    problem = address_problem(value)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return value.strip()


def _email_address(value: str) -> str:
    problem = address_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip()


EmailAddress = Annotated[str, Strict(), AfterValidator(_email_address), Must("an email address")]
