"""pydantic's ValidationError as the one line Herald prints: where, what, and the value.

    [ai] unknown option 'modle' (did you mean 'model'?)
    route 'coaches': priority 'high' is not one of urgent, normal, low
    [mail] batch_size must be an integer from 1 to 200, not 'x'

A section is named as herald.toml writes it (`[ai]`, `[retries.enrich]`), a route by its
name (or `routes[2]`). A field's `Must` phrase (herald/config/values.py) says what a value
must be; a choice lists its choices; a check of several options says its own sentence.
pydantic's wording (`Input should be ...`, `type=...`) never reaches a user.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from herald.config.document import SECTIONS, HeraldToml, options_of
from herald.config.routes import route_label
from herald.config.sections import DEFAULT_RETRIES
from herald.config.values import Must, Unfit

#: pydantic's names for a key its model does not have (dataclasses, models).
UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")


def explain(error: ValidationError, raw: Mapping[str, Any], *, file: str = "herald.toml") -> str:
    """The first problem pydantic found in herald.toml (`raw`), as one line."""
    return sentence(error.errors(include_url=False)[0], raw, file=file)


def sentence(error: ErrorDetails, raw: Mapping[str, Any], *, file: str) -> str:
    loc = tuple(error["loc"])
    if not loc:  # a check across sections
        return _reason(error)
    head = loc[0]
    if head not in SECTIONS:
        return f"{file}: unknown section [{head!s:.80}]{_suggest(str(head), SECTIONS, '[{}]')}"
    if head == "retries" and len(loc) == 3 and loc[2] == "[key]":
        return f"[retries] unknown actor {_quote(loc[1])}{_suggest(str(loc[1]), DEFAULT_RETRIES)}"
    if head in ("routes", "retries") and len(loc) >= 2:
        node = _at(raw, loc[:2])
        where = (
            f"route {route_label(int(loc[1]), node)!r}:"
            if head == "routes"
            else f"[retries.{loc[1]}]"
        )
        return _about(error, where, SECTIONS[str(head)], loc[2:], node)
    if len(loc) == 1 and head in ("routes", "retries"):
        return _about(error, "", HeraldToml, loc, raw)
    return _about(error, f"[{head}]", SECTIONS[str(head)], loc[1:], _at(raw, loc[:1]))


def _about(error: ErrorDetails, where: str, model: type, rest: tuple[Any, ...], node: Any) -> str:
    """The sentence for an error `rest` deep into a section (`node`, as herald.toml has it)."""
    lead = f"{where} " if where else ""
    if not rest:
        if error["type"] == "value_error":
            return f"{lead}{_reason(error)}"
        return f"{lead}must be a table, not {_quote(error['input'])}"
    option = str(rest[0])
    known = options_of(model)
    if error["type"] in UNKNOWN or option not in known:
        return f"{lead}unknown option {_quote(option)}{_suggest(option, known)}"
    must, path, choices = _describe(known[option].annotation, known[option].metadata, rest[1:])
    name = f"{option}{path}"
    reason = error.get("ctx", {}).get("error")
    if error["type"] == "literal_error" and choices:
        return f"{lead}{name} {_quote(error['input'])} is not one of {', '.join(choices)}"
    if error["type"] == "value_error" and not isinstance(reason, Unfit):
        return f"{lead}{name}: {_reason(error)}"
    if must is not None:
        value = _at(node, _without_positions(rest), default=error["input"])
        return f"{lead}{name} must be {must.text}, not {_quote(value)}"
    return f"{lead}{name}: {error['msg']}, not {_quote(error['input'])}"


def _describe(
    annotation: Any, metadata: Sequence[Any], inner: tuple[Any, ...]
) -> tuple[Must | None, str, tuple[str, ...]]:
    """Follow `inner` (list positions, table keys) into a field's type: the innermost `Must`
    on the way, the keys as a path (`.phone`), and the choices of a Literal at the end."""
    must = _must(metadata, None)
    key = bool(inner) and inner[-1] == "[key]"
    steps = inner[:-1] if key else inner
    kind, must = _unwrap(annotation, must)
    path = ""
    for index, step in enumerate(steps):
        args = get_args(kind)
        if get_origin(kind) is tuple and args:
            kind = args[0]
        elif get_origin(kind) in (dict, Mapping) and len(args) == 2:
            path += f".{step}"
            kind = args[0] if key and index == len(steps) - 1 else args[1]
        else:
            break
        kind, must = _unwrap(kind, must)
    choices = tuple(str(c) for c in get_args(kind)) if get_origin(kind) is Literal else ()
    return must, path, choices


def _unwrap(kind: Any, must: Must | None) -> tuple[Any, Must | None]:
    """`X | None` as X, `Annotated[X, ...]` as X with its `Must` (if any) taking over."""
    while True:
        origin = get_origin(kind)
        if origin in (Union, types.UnionType):
            kind = next(a for a in get_args(kind) if a is not type(None))
        elif origin is Annotated:
            kind, *metadata = get_args(kind)
            must = _must(metadata, must)
        else:
            return kind, must


def _must(metadata: Iterable[Any], fallback: Must | None) -> Must | None:
    return next((m for m in metadata if isinstance(m, Must)), fallback)


def _without_positions(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The option holding a list's item: the list is quoted, not the item."""
    while loc and (isinstance(loc[-1], int) or loc[-1] == "[key]"):
        loc = loc[:-1]
    return loc


def _at(node: Any, loc: tuple[Any, ...], default: Any = None) -> Any:
    """The value at `loc` in herald.toml as written, or `default`."""
    for step in loc:
        in_table = isinstance(node, Mapping) and step in node
        in_list = isinstance(node, list | tuple) and isinstance(step, int) and step < len(node)
        if not (in_table or in_list):
            return default
        node = node[step]
    return node


def _reason(error: ErrorDetails) -> str:
    reason = error.get("ctx", {}).get("error")
    return str(reason) if reason is not None else error["msg"]


def _quote(value: Any) -> str:
    return f"{value!r:.80}"


def _suggest(word: str, known: Iterable[str], form: str = "'{}'") -> str:
    """` (did you mean 'model'?)`, or the known names when none is close (a word far
    longer than any name is close to none: difflib's time grows with its length)."""
    names = list(known)
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6) if len(word) <= 64 else []
    if close:
        return f" (did you mean {form.format(close[0])}?)"
    return f" (known: {', '.join(form.format(n) for n in names)})"
