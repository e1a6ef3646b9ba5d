"""Replace personal data by aliases before anything leaves Herald, and put it back afterwards.

``alias_pii`` returns a deep copy of JSON-like data in which

* the whole value of any dict key that names personal data, at any depth: a field of
  ``pii_fields`` in any form (``firstName``, ``FIRST-NAME``), a synonym (``surname`` for
  ``last_name``, ``mobile_number`` for ``phone``) or a longer key ending in one
  (``billing_email``); see ``herald.enrich.pii_fields``,
* every email address and phone number found inside any string (values and keys), in
  the forms of ``herald.enrich.pii_detect`` (``+27 82 555 1234``, ``0027825551234``,
  ``082/555-1234``, ``"john doe"@example.com``, ``user＠example．com``, ...),
* integers of 9 to 15 digits, and strings that are nothing else (a phone number kept in
  a number column is still a phone number),
* the same inside strings that hold JSON (``'{"first_name": "Zed"}'`` in a text column:
  parsed, aliased, written back as a string), and the values of ``"first_name": "Zed"``
  pairs in text that does not parse (cut, or not quite JSON),
* and any later verbatim occurrence of such a field value inside free text

is replaced by an alias, plus the map ``alias -> real value`` that ``unalias`` uses to put
the real values back into the model's answer.

Alias format: an upper-case type, an underscore and a number: ``EMAIL_1``, ``PHONE_2``,
``NUMBER_1``, and for fields the field's group, ``FIRST_NAME_1``, ``LAST_NAME_3``. Models
copy such tokens verbatim (no brackets to drop or escape, no spaces to re-flow), they are
neither email addresses nor phone numbers (so sanitising the model's output keeps them),
and the same real value always gets the same alias within one call. Numbering follows the
data's order, so the same input gives the same aliases and a retry sends the same prompt.
Alias-shaped tokens already present in the input are never handed out, so ``unalias``
cannot turn a literal ``EMAIL_1`` from the data into someone's address.

``None``, booleans and empty strings in PII fields are kept: they hide nothing and "was
emptied" is worth telling. Work is bounded: every string is cut to ``max_scan`` before it
is scanned, and with ``max_chars`` only about as much as reaches the model is copied and
scanned at all. Detection is heuristic (like any regex or NER): it lowers what leaves the
system, it does not prove nothing personal does; send the model only what it needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herald.enrich.pii_detect import AT_SIGNS, EMAIL_PATTERN, email_spans, phone_spans, safe_cut
from herald.enrich.pii_fields import PiiFields, field_matcher

__all__ = [
    "EMAIL_PATTERN",
    "Aliased",
    "PiiFields",
    "alias_pii",
    "field_matcher",
    "truncate",
    "unalias",
]

MAX_DEPTH = 64  # deeper structures are replaced by a marker instead of crashing the worker
_TOO_DEEP = "…[nested too deep]"
_IN_TEXT_MAX = 256  # longer field values are unlikely to recur verbatim in free text
_NUMBER_DIGITS = (9, 15)  # integers this long may be phone numbers (E.164: at most 15)

# Tokens that look like aliases, for collision avoidance and for nothing else.
_ALIAS_LIKE = re.compile(r"(?<!\w)[A-Z][A-Z0-9_]*+")
_WORD = re.compile(r"\w++")
# Every email address has an "@" (or a fullwidth or small one) and every phone number a
# digit: text with neither holds none, and the detectors need not run on it.
_MAY_HOLD_CONTACT = re.compile(rf"[{AT_SIGNS}\d]")
# ``"key": "value"`` / ``key='value'`` / ``"key": 123`` / ``key: word`` in text: a key
# (quoted, or a bare word), ":" or "=", then a quoted value, a number or one word.
# Bounded, possessive repeats: linear.
_KEY_VALUE = re.compile(
    r"""(?:\\?(?P<kq>["'])(?P<qkey>(?:(?!(?P=kq))[^\\\r\n]){1,64}+)\\?(?P=kq)"""
    r"""|(?<![\w\-])(?P<key>[A-Za-z_][\w\-]{0,63}+))"""
    r"""[ \t]{0,8}+[:=][ \t]{0,8}+"""
    r"""(?:\\?(?P<vq>["'])(?P<value>(?:(?!(?P=vq))[^\\\r\n]){1,256}+)\\?(?P=vq)"""
    r"""|(?P<number>[+(]?\d[\d ()./\-]{0,24}+)|(?P<word>[^\W\d_][\w'.\-]{0,63}+))"""
)

_JSON_STARTS = ("{", "[")
_NO_VALUE = frozenset({"null", "none", "nil", "undefined", "true", "false", "n/a", "-"})


@dataclass(frozen=True)
class Aliased:
    """The aliased copy of the data, and how to undo it."""

    data: Any  # a deep copy of the input with PII replaced by aliases
    aliases: dict[str, str]  # alias -> real value


def truncate(text: str, limit: int) -> str:
    """Cut ``text`` to about ``limit`` characters with a visible ``…[truncated N chars]`` marker.

    The cut moves back to whitespace (at most 64 characters), and never falls inside an
    email address or phone number: a fragment the detectors no longer recognise would
    reach the model unaliased.
    """
    if len(text) <= limit:
        return text
    cut = safe_cut(text, limit)
    return f"{text[:cut]}…[truncated {len(text) - cut} chars]"


def alias_pii(
    data: Any,
    pii_fields: Collection[str] | PiiFields,
    *,
    synonyms: Mapping[str, Iterable[str]] | None = None,
    max_scan: int = 100_000,
    max_chars: int | None = None,
) -> Aliased:
    """Return a deep copy of ``data`` with personal data replaced by aliases (see module doc).

    ``pii_fields`` and ``synonyms`` name the fields (``[ai] pii_fields`` and the route's
    ``pii_synonyms``); the shipped synonyms of each named field apply too. Every string
    (value or key) longer than ``max_scan`` is truncated *before* it is scanned, so a
    10 MB value costs bounded time. ``max_chars`` bounds the whole copy to about that many
    characters of compact JSON, in data order: strings are cut, and the items and fields
    that no longer fit are left out, with a marker (``"…[1992 more changes omitted]"``),
    so a notification of 2,000 changes costs what the prompt can hold, not more.
    """
    if max_scan < 1:
        raise ValueError("max_scan must be at least 1")
    if max_chars is not None and max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    aliaser = _Aliaser(field_matcher(pii_fields, synonyms), max_scan, max_chars)
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


@dataclass(frozen=True)
class _JsonText:
    """A string that held JSON: the original text and its parsed (prepared) value."""

    text: str
    value: Any


class _Aliaser:
    """State for one ``alias_pii`` call: the alias table and what must not be reused."""

    def __init__(self, fields: PiiFields, max_scan: int, max_chars: int | None) -> None:
        self.fields = fields
        self.max_scan = max_scan
        self.budget = max_chars  # characters of compact JSON left to copy, None: no bound
        self.aliases: dict[str, str] = {}  # alias -> real
        self.by_value: dict[str, str] = {}  # real -> alias
        self.counters: dict[str, int] = {}
        self.reserved: set[str] = set()  # alias-shaped tokens found in the input
        self.field_values: list[tuple[str, str]] = []  # (type, real) in data order
        self.known: dict[str, list[tuple[int, str, str]]] = {}  # word -> (offset, spelling, alias)

    # -- pass 1: copy, cut, collect --------------------------------------------------------

    def prepare(self, value: Any, depth: int) -> Any:
        """Deep-copy within the budget, strings cut; note field values and alias-like tokens."""
        if depth > MAX_DEPTH:
            return self._spend(_TOO_DEEP)
        if isinstance(value, str):
            return self._prepare_text(value, depth)
        if value is None or isinstance(value, bool | int | float):
            self._charge(len(str(value)))
            return value
        if isinstance(value, (dict, Mapping)):  # noqa: UP038 - dict first: the common case
            return self._prepare_mapping(value, depth)
        if isinstance(value, list | tuple):
            self._charge(2)
            out: list[Any] = []
            for n, item in enumerate(value):
                if self._spent():
                    what = "changes" if depth == 0 else "items"
                    out.append(f"…[{len(value) - n} more {what} omitted]")
                    break
                out.append(self.prepare(item, depth + 1))
                self._charge(1)
            return out
        return self.prepare(str(value), depth)  # dates, decimals, ...: scanned as text

    def _prepare_mapping(self, value: Mapping[Any, Any], depth: int) -> dict[Any, Any]:
        # The hot loop of the copy (every key of every row): the budget is kept inline.
        self._charge(2)
        out: dict[Any, Any] = {}
        for n, (key, item) in enumerate(value.items()):
            if self.budget is not None and self.budget <= 0:
                out["…"] = f"[{len(value) - n} more fields omitted]"
                break
            kind = None
            if isinstance(key, str):
                key = self._spend(key if len(key) <= self.max_scan else self._cut(key))
                tokens = _ALIAS_LIKE.findall(key)
                if tokens:
                    self.reserved.update(tokens)
                kind = self.fields.kind_of(key)
            if isinstance(item, str) and depth < MAX_DEPTH:  # as prepare() would, one call less
                item = self._prepare_text(item, depth + 1)
            else:
                item = self.prepare(item, depth + 1)
            if self.budget is not None:
                self.budget -= 2
            if kind and _hides_something(item):
                self.field_values.append((kind, self._real_text(item)))
            out[key] = item
        return out

    def _prepare_text(self, value: str, depth: int) -> Any:
        # Truncate first, scan second. The regex engine runs in C holding the GIL, so
        # scanning a 10 MB value would stall every thread of the worker (heartbeats,
        # other actors, metrics) for as long as it takes; scanning only ``max_scan``
        # characters caps that stall, whatever the size of the row.
        text = self._spend(value if len(value) <= self.max_scan else self._cut(value))
        tokens = _ALIAS_LIKE.findall(text)
        if tokens:
            self.reserved.update(tokens)
        # Only text that starts with "{" or "[" (after whitespace) may hold JSON.
        parsed = _json_in(text) if text[:1] in _JSON_STARTS or text[:1].isspace() else None
        if parsed is not None:
            budget, self.budget = self.budget, None  # already paid for as text
            try:
                return _JsonText(text, self.prepare(parsed, depth + 1))
            finally:
                self.budget = budget
        if ":" in text or "=" in text:
            for m in _KEY_VALUE.finditer(text):
                kind = self._kind(m.group("qkey") or m.group("key"))
                real = (m.group("value") or m.group("number") or m.group("word") or "").strip()
                if kind and real and real.casefold() not in _NO_VALUE:
                    self.field_values.append((kind, real))
        return text

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
        if isinstance(value, _JsonText):
            return json.dumps(self.replace(value.value), ensure_ascii=False)
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return self._number(value)
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            kind_of = self.fields.kind_of
            for key, item in value.items():
                if not isinstance(key, str):
                    out[key] = self.replace(item)
                elif kind_of(key) and _hides_something(item):
                    out[self._scan(key)] = self.by_value[self._real_text(item)]
                else:  # the item before the key: aliases in data order
                    if isinstance(item, str):
                        item = self._scan(item)  # as replace() would, one call less
                    elif item is not None:
                        item = self.replace(item)
                    out[self._scan(key)] = item
            return out
        if isinstance(value, list):
            return [self.replace(item) for item in value]
        return value

    def _number(self, value: int | float) -> Any:
        """An integer of 9 to 15 digits may be a phone number kept in a number column."""
        if isinstance(value, float) and not value.is_integer():
            return value
        low, high = _NUMBER_DIGITS
        if 10 ** (low - 1) <= value < 10**high:
            return self._alias("NUMBER", str(value))
        return value

    def _scan(self, text: str) -> str:
        """Alias emails, then phones, then known field values inside one (truncated) string."""
        if text.isdecimal() and _NUMBER_DIGITS[0] <= len(text) <= _NUMBER_DIGITS[1]:
            whole = phone_spans(text) == [(0, len(text))]
            return self._alias("PHONE" if whole else "NUMBER", text)
        if _MAY_HOLD_CONTACT.search(text) is not None:
            text = self._replace_spans(text, "EMAIL", email_spans(text))
            text = self._replace_spans(text, "PHONE", phone_spans(text))
        known = self.known
        if not known or known.keys().isdisjoint(_WORD.findall(text)):
            return text  # no word of the text starts a known value: most strings
        return self._replace_known(text)

    def _replace_spans(self, text: str, kind: str, spans: list[tuple[int, int]]) -> str:
        if not spans:
            return text
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts += [text[last:start], self._alias(kind, text[start:end])]
            last = end
        parts.append(text[last:])
        return "".join(parts)

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

    def _kind(self, key: Any) -> str | None:
        """The alias type of a key that names personal data, else None (the matcher
        remembers each key's decision for the process)."""
        return self.fields.kind_of(key) if isinstance(key, str) else None

    def _charge(self, chars: int) -> None:
        if self.budget is not None:
            self.budget -= chars

    def _spent(self) -> bool:
        return self.budget is not None and self.budget <= 0

    def _cut(self, text: str) -> str:
        return truncate(text, self.max_scan)

    def _spend(self, text: str) -> str:
        """``text``, cut to what is left of the budget, which it then uses up."""
        if self.budget is not None:
            if len(text) + 2 > self.budget:
                text = truncate(text, max(self.budget - 2, 0))
            self.budget -= len(text) + 2
        return text

    def _real_text(self, value: Any) -> str:
        """The real value as text, for the alias table (containers as compact JSON)."""
        if isinstance(value, str):
            return value
        if isinstance(value, _JsonText):
            return value.text
        options: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":")}
        try:
            text = json.dumps(value, sort_keys=True, default=_as_text, **options)
        except TypeError:  # keys of mixed types cannot be sorted
            text = json.dumps(value, default=_as_text, **options)
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


def _hides_something(value: Any) -> bool:
    """None, booleans and "" in a PII field are kept: they hide nothing."""
    return value is not None and value != "" and not isinstance(value, bool)


def _as_text(value: Any) -> Any:
    return value.text if isinstance(value, _JsonText) else str(value)


def _json_in(text: str) -> Any:
    """The object or array ``text`` holds as JSON, else None (never raises)."""
    body = text.strip()
    if len(body) < 2 or (body[0], body[-1]) not in (("{", "}"), ("[", "]")):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: "[[[[…" 100,000 deep
        return None
    return value if isinstance(value, dict | list) else None


def _is_word_char(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")
