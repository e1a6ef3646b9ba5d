"""Replace personal data by aliases before anything leaves Herald, and put it back afterwards.

``alias_pii`` returns a deep copy of JSON-like data in which

* the whole value of any dict key named in ``pii_fields`` (case-insensitive, at any depth),
* every email address and phone number found inside any string (values and keys),
* and any later verbatim occurrence of a ``pii_fields`` value inside free text

is replaced by an alias, plus the map ``alias -> real value`` that ``unalias`` uses to put
the real values back into the model's answer.

Alias format: an upper-case type, an underscore and a number: ``EMAIL_1``, ``PHONE_2``, and
for fields the field's name, ``FIRST_NAME_1``, ``LAST_NAME_3``. Models copy such tokens
verbatim (no brackets to drop or escape, no spaces to re-flow), they are neither email
addresses nor phone numbers (so sanitising the model's output keeps them), and the same
real value always gets the same alias within one call. Numbering follows the data's
order, so the same input gives the same aliases and a retry sends the same prompt.
Alias-shaped tokens already present in the input are never handed out, so ``unalias``
cannot turn a literal ``EMAIL_1`` from the data into someone's address.

``None`` and empty strings in PII fields are kept: they hide nothing and "was emptied"
is worth telling. Detection is heuristic (like any regex or NER): it lowers what leaves
the system, it does not prove nothing personal does; send the model only what it needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["EMAIL_PATTERN", "Aliased", "alias_pii", "truncate", "unalias"]

MAX_DEPTH = 64  # deeper structures are replaced by a marker instead of crashing the worker
_TOO_DEEP = "…[nested too deep]"
_IN_TEXT_MAX = 256  # longer field values are unlikely to recur verbatim in free text
_BACKOFF = 64  # how far truncation may move back to cut at whitespace, not inside a token

# Every pattern below is linear by construction: possessive quantifiers (``++``, ``*+``)
# never give characters back, and each repetition is separated by a character the
# repeated part cannot contain, so there is only one way to match any text. A pattern
# that backtracks holds the GIL for as long as it runs and stalls every thread of the
# worker (heartbeats, consumers, metrics) — see DESIGN.md, "Bounded work on hostile input".

# Local part, "@", dot-separated labels, alphabetic TLD. The look-behind makes a match
# start only at the beginning of a run of local-part characters, so "a" * 50_000 + "@"
# is read once, not once per starting position (the classic quadratic email regex).
EMAIL_PATTERN = re.compile(
    r"(?<![\w.%+\-])[\w.%+\-]++"  # the local part, read once
    r"@(?:[^\W_][\w\-]*+\.)+[^\W\d_]{2,63}+(?![\w\-])"  # labels, then an alphabetic TLD
)

# A run of digit groups with at most one separator between groups. What makes a run a
# phone number is decided in Python (``_phone_spans``), which keeps the regex trivially
# linear and the rules readable.
_SEP = " .\\-\u00a0\u202f"
_PHONE_RUN = re.compile(
    rf"(?<![\w+])(?<![\d)][{_SEP}])"  # not inside a word, not inside a run of groups
    rf"\+?(?:\(\d{{1,5}}\)|\d++)(?:[{_SEP}]?(?:\(\d{{1,5}}\)|\d++))*+"
)
_PHONE_GROUP = re.compile(r"\(\d{1,5}\)|\d++")
_MAX_GROUPS = 6  # "+33 6 12 34 56 78" is the longest common layout

# Tokens that look like aliases, for collision avoidance and for nothing else.
_ALIAS_LIKE = re.compile(r"(?<!\w)[A-Z][A-Z0-9_]*+")
_WORD = re.compile(r"\w++")


@dataclass(frozen=True)
class Aliased:
    """The aliased copy of the data, and how to undo it."""

    data: Any  # a deep copy of the input with PII replaced by aliases
    aliases: dict[str, str]  # alias -> real value


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to about ``limit`` characters with a visible ``…[truncated N chars]`` marker.

    The cut moves back (at most 64 characters) to whitespace, so an email address or phone
    number is not split into a fragment the detectors no longer recognise.
    """
    if len(text) <= limit:
        return text
    cut = limit
    for k in range(limit - 1, max(limit - _BACKOFF, 0) - 1, -1):
        if text[k].isspace():
            cut = k
            break
    return f"{text[:cut]}…[truncated {len(text) - cut} chars]"


def alias_pii(data: Any, pii_fields: Collection[str], *, max_scan: int = 100_000) -> Aliased:
    """Return a deep copy of ``data`` with personal data replaced by aliases (see module doc).

    Every string (value or key) longer than ``max_scan`` is truncated *before* it is
    scanned, so a 10 MB value costs bounded time and the prompt stays small.
    """
    if max_scan < 1:
        raise ValueError("max_scan must be at least 1")
    aliaser = _Aliaser({str(f).casefold() for f in pii_fields}, max_scan)
    prepared = aliaser.prepare(data, 0)
    aliaser.name_field_values()
    return Aliased(aliaser.replace(prepared), dict(aliaser.aliases))


def unalias(text: str, aliases: Mapping[str, str]) -> str:
    """Put real values back in place of aliases, in one pass.

    Longest alias first, and only whole tokens, so ``EMAIL_10`` is never read as
    ``EMAIL_1`` followed by ``0``; one pass, so a real value is never itself rewritten.
    """
    if not aliases or not text:
        return text
    names = sorted(aliases, key=len, reverse=True)
    pattern = re.compile(
        r"(?<![A-Za-z0-9_])(?:" + "|".join(map(re.escape, names)) + r")(?![A-Za-z0-9_])"
    )
    return pattern.sub(lambda m: aliases[m.group(0)], text)


class _Aliaser:
    """State for one ``alias_pii`` call: the alias table and what must not be reused."""

    def __init__(self, pii_fields: set[str], max_scan: int) -> None:
        self.pii_fields = pii_fields
        self.max_scan = max_scan
        self.aliases: dict[str, str] = {}  # alias -> real
        self.by_value: dict[str, str] = {}  # real -> alias
        self.counters: dict[str, int] = {}
        self.reserved: set[str] = set()  # alias-shaped tokens found in the input
        self.field_values: list[tuple[str, str]] = []  # (type, real) in data order
        self.known: dict[str, list[tuple[int, str, str]]] = {}  # word -> (offset, spelling, alias)

    # -- pass 1: copy, truncate, collect ----------------------------------------------------

    def prepare(self, value: Any, depth: int) -> Any:
        """Deep-copy with every string truncated; note field values and alias-like tokens."""
        if depth > MAX_DEPTH:
            return _TOO_DEEP
        if isinstance(value, str):
            # Truncate first, scan second. The regex engine runs in C holding the GIL, so
            # scanning a 10 MB value would stall every thread of the worker (heartbeats,
            # other actors, metrics) for as long as it takes; scanning only ``max_scan``
            # characters caps that stall, whatever the size of the row.
            text = truncate(value, self.max_scan)
            self.reserved.update(m.group(0) for m in _ALIAS_LIKE.finditer(text))
            return text
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                key = self.prepare(key, depth + 1) if isinstance(key, str) else key
                item = self.prepare(item, depth + 1)
                if self._is_pii_key(key) and item is not None and item != "":
                    self.field_values.append((_type_of(str(key)), self._real_text(item)))
                out[key] = item
            return out
        if isinstance(value, list | tuple):
            return [self.prepare(item, depth + 1) for item in value]
        return self.prepare(str(value), depth)  # dates, decimals, ...: scanned as text

    def name_field_values(self) -> None:
        """Give field values their aliases (in data order) and build the free-text matcher."""
        spellings: dict[str, str] = {}
        for kind, real in self.field_values:
            alias = self._alias(kind, real)
            if 2 <= len(real.strip()) <= _IN_TEXT_MAX:
                # The field's own spelling, UPPER and Title case: "Alice" in a note, a
                # shouted "ALICE"; not lower case, so a first name "Will" leaves "will" alone.
                for spelling in (real, real.upper(), real.title()):
                    spellings.setdefault(spelling, alias)
        # Indexed by each spelling's first word: one dict lookup per word of text, where a
        # regex alternation of hundreds of names would try every name at every position.
        for spelling in sorted(spellings, key=len, reverse=True):
            word = _WORD.search(spelling)
            if word:
                self.known.setdefault(word.group(0), []).append(
                    (word.start(), spelling, spellings[spelling])
                )

    # -- pass 2: replace -------------------------------------------------------------------

    def replace(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scan(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                if self._is_pii_key(key) and item is not None and item != "":
                    item = self.by_value[self._real_text(item)]
                else:
                    item = self.replace(item)
                out[self._scan(key) if isinstance(key, str) else key] = item
            return out
        if isinstance(value, list):
            return [self.replace(item) for item in value]
        return value

    def _scan(self, text: str) -> str:
        """Alias emails, then phones, then known field values inside one (truncated) string."""
        text = EMAIL_PATTERN.sub(lambda m: self._alias("EMAIL", m.group(0)), text)
        spans = _phone_spans(text)
        if spans:
            parts: list[str] = []
            last = 0
            for start, end in spans:
                parts += [text[last:start], self._alias("PHONE", text[start:end])]
                last = end
            parts.append(text[last:])
            text = "".join(parts)
        return self._replace_known(text) if self.known else text

    def _replace_known(self, text: str) -> str:
        """Alias verbatim occurrences of field values ("Alice" in a note), whole words only."""
        parts: list[str] = []
        last = 0
        for word in _WORD.finditer(text):
            if word.start() < last:
                continue
            for offset, spelling, alias in self.known.get(word.group(0), ()):
                start = word.start() - offset
                end = start + len(spelling)
                if (
                    start >= last
                    and text.startswith(spelling, start)
                    and not _is_word_char(text, start - 1)
                    and not _is_word_char(text, end)
                ):
                    parts += [text[last:start], alias]
                    last = end
                    break
        if not parts:
            return text
        parts.append(text[last:])
        return "".join(parts)

    # -- helpers ---------------------------------------------------------------------------

    def _is_pii_key(self, key: Any) -> bool:
        return isinstance(key, str) and key.casefold() in self.pii_fields

    def _real_text(self, value: Any) -> str:
        """The real value as text, for the alias table (containers as compact JSON)."""
        if isinstance(value, str):
            return value
        try:
            text = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        except TypeError:  # keys of mixed types cannot be sorted
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return truncate(text, self.max_scan)

    def _alias(self, kind: str, real: str) -> str:
        alias = self.by_value.get(real)
        if alias is None:
            n = self.counters.get(kind, 0)
            while True:
                n += 1
                alias = f"{kind}_{n}"
                if alias not in self.reserved:
                    break
            self.counters[kind] = n
            self.by_value[real] = alias
            self.aliases[alias] = real
        return alias


def _is_word_char(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


def _type_of(field: str) -> str:
    """``first_name`` -> ``FIRST_NAME``: the alias type a field's values get."""
    kind = re.sub(r"[^A-Z0-9]+", "_", field.upper()).strip("_")[:32]
    if not kind or not kind[0].isalpha():
        kind = f"PII_{kind}".rstrip("_")
    return kind


# -- phone numbers ---------------------------------------------------------------------------


def _phone_spans(text: str) -> list[tuple[int, int]]:
    """Where the phone numbers are in ``text``, as (start, end) spans, left to right."""
    spans: list[tuple[int, int]] = []
    for run in _PHONE_RUN.finditer(text):
        found = list(_PHONE_GROUP.finditer(text, run.start(), run.end()))
        groups = [_Groups.Group(g.group(0).strip("()"), g.group(0)[0] == "(") for g in found]
        seps = [text[a.end() : b.start()] for a, b in zip(found, found[1:], strict=False)]
        window = _Groups(groups, seps, plus=text[run.start()] == "+")
        # The longest phone number starting at each group wins; windows are at most
        # _MAX_GROUPS long, so a run of n groups costs O(n), never O(n²).
        i = 0
        while i < len(groups):
            for j in range(min(len(groups), i + _MAX_GROUPS), i, -1):
                if window.is_phone(i, j):
                    start = run.start() if window.plus and i == 0 else found[i].start()
                    spans.append((start, found[j - 1].end()))
                    i = j
                    break
            else:
                i += 1
    return spans


class _Groups:
    """The digit groups of one run, with what ``is_phone`` needs precomputed."""

    class Group(NamedTuple):
        digits: str
        paren: bool

    def __init__(self, groups: list[Group], seps: list[str], *, plus: bool) -> None:
        self.groups = groups
        self.plus = plus
        self.total = [0]  # digits before group i
        for g in groups:
            self.total.append(self.total[-1] + len(g.digits))
        kinds = [" " if sep in ("\u00a0", "\u202f") else sep for sep in seps]
        self.same = [0] * len(kinds)  # how many equal, non-empty separators start at k
        for k in range(len(kinds) - 1, -1, -1):
            if kinds[k]:
                follows = k + 1 < len(kinds) and kinds[k + 1] == kinds[k]
                self.same[k] = 1 + (self.same[k + 1] if follows else 0)

    def is_phone(self, i: int, j: int) -> bool:
        """Decide whether groups ``i`` to ``j - 1`` are a phone number.

        Accepted: international "+44 20 7946 0958", "+1-202-555-0143", "+447946095800";
        an area code in brackets "(555) 123-4567"; North American "555-123-4567",
        "1 800 555 1234"; national numbers with a trunk 0, "06 12 34 56 78",
        "020 7946 0958", "0612345678". Rejected: short integers, ids and timestamps without
        a "+" or a leading 0 (5551234567 is an id as often as a phone), years, dates,
        decimals, amounts.
        """
        digits = self.total[j] - self.total[i]
        if not 7 <= digits <= 15:
            return False
        if self.plus and i == 0:
            return digits >= 8
        groups = self.groups[i:j]
        first = groups[0]
        if first.paren:
            return len(groups) >= 2 and digits >= 9 and not any(g.paren for g in groups[1:])
        if len(groups) == 1:  # unseparated: only a trunk-0 national number
            return first.digits[0] == "0" and first.digits[1] != "0" and 10 <= digits <= 11
        if self.same[i] < len(groups) - 1:
            return False  # "2024-01-15 10" mixes separators; phones keep one
        if any(g.paren for g in groups):
            return False
        sizes = tuple(len(g.digits) for g in groups)
        if sizes[:3] in ((4, 2, 2), (2, 2, 4)):
            return False  # a date: 2024-01-15, 15.01.2024, 01 02 2024
        if sizes == (3, 3, 4) and first.digits[0] in "23456789":
            return True
        if sizes == (1, 3, 3, 4) and first.digits == "1" and groups[1].digits[0] in "23456789":
            return True
        return (
            first.digits[0] == "0"
            and 2 <= len(first.digits) <= 5
            and first.digits.strip("0") != ""
            and max(sizes) <= 8
            and digits >= 9
        )
