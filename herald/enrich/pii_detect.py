"""Find email addresses and phone numbers in text, in time linear in the text's length.

Every pattern here is linear by construction: possessive quantifiers (``++``, ``*+``)
never give characters back, bounded repeats are short, and each repetition is separated
by a character the repeated part cannot contain, so there is only one way to match any
text. A pattern that backtracks holds the GIL for as long as it runs and stalls every
thread of the worker (heartbeats, consumers, metrics): DESIGN.md, "Bounded work on
hostile input". What makes a run of digits a phone number is decided in Python
(``_Groups.is_phone``), which keeps the patterns trivial and the rules readable.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

__all__ = ["AT_SIGNS", "EMAIL_PATTERN", "email_spans", "phone_spans", "safe_cut"]

# "@" and "." as people type them on any keyboard: fullwidth (U+FF20, U+FF0E), small
# commercial at (U+FE6B), ideographic and halfwidth full stops (U+3002, U+FF61), which
# mail clients and browsers read as "@" and "." (IDNA maps the dots).
_AT = AT_SIGNS = "@\uff20\ufe6b"
_DOTS = ".\uff0e\u3002\uff61"
_LOCAL = rf"\w%+\-'{_DOTS}"

# Local part, "@", then dot-separated labels and a TLD, or an address literal. The local
# part is a dot-atom read once from the start of its run (the look-behind makes a match
# start only where a run starts, so "a" * 50_000 + "@" is read once, not once per
# position: the classic quadratic email regex), or a quoted string of at most 64
# characters ("john doe"@example.com). The domain is a host name with an alphabetic or
# punycode TLD, or a bracketed IP literal (user@[192.168.0.1], user@[IPv6:::1]).
EMAIL_PATTERN = re.compile(
    rf"(?:(?<![{_LOCAL}])[{_LOCAL}]++"
    r'|"(?:[^"\\\r\n]|\\[^\r\n]){1,64}+")'
    rf"[{_AT}]"
    r"(?:\[(?:[Ii][Pp][Vv]6:)?[0-9A-Fa-f:.]{2,45}+\]"
    rf"|(?:[^\W_][\w\-]*+[{_DOTS}])+(?:[^\W\d_]{{2,63}}+|[Xx][Nn]--[A-Za-z0-9\-]{{1,59}}+)"
    r"(?![\w\-]))"
)
_LEADING = "'" + _DOTS  # may start a run of local-part characters, never an address


def email_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Where the email addresses are in ``text[start:end]``, as (start, end), in order."""
    spans = []
    for m in EMAIL_PATTERN.finditer(text, start, len(text) if end is None else end):
        a = m.start()
        while text[a] in _LEADING:  # "'alice@example.com'": the quote is not the address's
            a += 1
        spans.append((a, m.end()))
    return spans


# -- phone numbers ---------------------------------------------------------------------------

# Separators between digit groups: spaces (no-break, thin, figure), dots, slashes, and
# every dash: hyphen-minus, U+2010 to U+2015, minus sign U+2212.
_SPACES = "\u00a0\u2007\u2009\u202f"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"
_SEP = " ./\\-" + _SPACES + _DASHES
_PLUS = "+\uff0b"
_PHONE_RUN = re.compile(
    rf"(?<![\w{_PLUS}])(?<![\d)][{_SEP}])"  # not inside a word, not inside a run of groups
    rf"[{_PLUS}]?(?:\(\d{{1,5}}\)|\d++)(?:[{_SEP}]?(?:\(\d{{1,5}}\)|\d++))*+"
)
_PHONE_GROUP = re.compile(r"\(\d{1,5}\)|\d++")
_MAX_GROUPS = 7  # "00 33 6 12 34 56 78" is the longest common layout
_KIND = {**dict.fromkeys(_SPACES, " "), **dict.fromkeys(_DASHES, "-")}

# Country calling codes are prefix-free (ITU-T E.164): the two-digit codes, and the
# first two digits of the three-digit ones. "1" and "7" are the one-digit codes.
_CC2 = frozenset({
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46",
    "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
})  # fmt: skip
_CC3_PREFIX = frozenset({
    "21", "22", "23", "24", "25", "26", "28", "29", "35", "37", "38", "42", "50", "59", "67",
    "68", "69", "80", "83", "85", "87", "88", "89", "96", "97", "99",
})  # fmt: skip


def phone_spans(text: str) -> list[tuple[int, int]]:
    """Where the phone numbers are in ``text``, as (start, end) spans, left to right."""
    spans: list[tuple[int, int]] = []
    for run in _PHONE_RUN.finditer(text):
        found = list(_PHONE_GROUP.finditer(text, run.start(), run.end()))
        groups = [_Group(_ascii(g.group(0).strip("()")), g.group(0)[0] == "(") for g in found]
        seps = [text[a.end() : b.start()] for a, b in zip(found, found[1:], strict=False)]
        window = _Groups(groups, seps, plus=text[run.start()] in _PLUS)
        # The longest phone number starting at each group wins; windows are at most
        # _MAX_GROUPS long, so a run of n groups costs O(n), never O(n²).
        i = 0
        while i < len(groups):
            longest = min(len(groups), i + _MAX_GROUPS)
            if window.total[longest] - window.total[i] < 7:
                i += 1  # too few digits for any phone number to start here
                continue
            for j in range(longest, i, -1):
                if window.is_phone(i, j):
                    start = run.start() if window.plus and i == 0 else found[i].start()
                    spans.append((start, found[j - 1].end()))
                    i = j
                    break
            else:
                i += 1
    return spans


def _ascii(digits: str) -> str:
    """Fullwidth, Arabic-Indic... digits as ASCII, for the rules below."""
    if digits.isascii():
        return digits
    return "".join(str(unicodedata.decimal(c)) for c in digits)


class _Group(NamedTuple):
    digits: str  # ASCII
    paren: bool


class _Groups:
    """The digit groups of one run, with what ``is_phone`` needs precomputed."""

    def __init__(self, groups: list[_Group], seps: list[str], *, plus: bool) -> None:
        self.groups = groups
        self.plus = plus
        self.total = [0]  # digits before group i
        for g in groups:
            self.total.append(self.total[-1] + len(g.digits))
        self.kinds = [_KIND.get(sep, sep) for sep in seps]
        self.same = [0] * len(self.kinds)  # how many equal, non-empty separators start at k
        for k in range(len(self.kinds) - 1, -1, -1):
            if self.kinds[k]:
                follows = k + 1 < len(self.kinds) and self.kinds[k + 1] == self.kinds[k]
                self.same[k] = 1 + (self.same[k + 1] if follows else 0)

    def is_phone(self, i: int, j: int) -> bool:
        """Decide whether groups ``i`` to ``j - 1`` are a phone number.

        Accepted: international "+44 20 7946 0958", "+1-202-555-0143", "0027825551234",
        "00 27 82 555 1234", "27 82 555 1234" (a country code without "+"); an area code
        in brackets "(555) 123-4567" or before a slash "082/555-1234", "030/1234567";
        North American "555-123-4567", "1 800 555 1234", "1 (800) 555-1234"; national
        numbers with a trunk 0, "06 12 34 56 78", "020 7946 0958", "0612345678"; Indian
        "98765 43210"; Chinese mobiles "138 0013 8000". Rejected: short integers, ids and
        timestamps without a "+" or a leading 0 (5551234567 is an id as often as a phone),
        years, dates, decimals, amounts, thousands groups ("1 000 000 000"), ISBNs.
        """
        digits = self.total[j] - self.total[i]
        first = self.groups[i].digits
        if first == "00" and j - i > 1:  # the international prefix, apart: "00 27 82 …"
            return (
                8 <= digits - 2 <= 15
                and self.groups[i + 1].digits[0] != "0"
                and self._one_separator(i, j)
                and not any(g.paren for g in self.groups[i:j])
            )
        if not 7 <= digits <= 15:
            return False
        groups = self.groups[i:j]
        if self.plus and i == 0:
            return digits >= 8
        if groups[0].paren:
            return len(groups) >= 2 and digits >= 9 and not any(g.paren for g in groups[1:])
        if len(groups) == 1:  # unseparated: a trunk-0 national number or "00" international
            if first.startswith("00"):
                return first[2] != "0" and digits >= 11
            return first[0] == "0" and first[1] != "0" and 10 <= digits <= 11
        sizes = tuple(len(g.digits) for g in groups)
        if first == "1" and sizes == (1, 3, 3, 4) and groups[1].paren:
            return not any(g.paren for g in groups[2:])  # 1 (800) 555-1234
        if not self._one_separator(i, j) or any(g.paren for g in groups):
            return False
        if _is_date(groups[:3]):
            return False  # a date: 2024-01-15, 15.01.2024, 01 02 2024
        if first[0] == "0":  # a trunk 0: "020 7946 0958", "082/555-1234"
            return (
                2 <= len(first) <= 5 and first.strip("0") != "" and max(sizes) <= 8 and digits >= 9
            )
        return _without_prefix(first, groups, sizes, digits)

    def _one_separator(self, i: int, j: int) -> bool:
        """One kind of separator throughout ("2024-01-15 10" mixes them; phones keep one),
        except a slash after the area code: "082/555-1234"."""
        n = j - i - 1  # separators between groups i..j-1
        if self.same[i] >= n:
            return True
        return self.kinds[i] == "/" and (n == 1 or self.same[i + 1] >= n - 1)


def _is_date(groups: list[_Group]) -> bool:
    """2024-01-15, 15.01.2024, 01/15/2024: a year and a plausible month and day."""
    if len(groups) < 3:
        return False
    a, b, c = (g.digits for g in groups)
    if len(a) == 4 and len(b) == len(c) == 2:
        year, day_or_month = a, (b, c)
    elif len(a) == len(b) == 2 and len(c) == 4:
        year, day_or_month = c, (a, b)
    else:
        return False
    x, y = int(day_or_month[0]), int(day_or_month[1])
    plausible = (1 <= x <= 12 and 1 <= y <= 31) or (1 <= x <= 31 and 1 <= y <= 12)
    return year[:2] in ("19", "20") and plausible


def _without_prefix(first: str, groups: list[_Group], sizes: tuple[int, ...], digits: int) -> bool:
    """Numbers written with neither "+" nor a trunk 0."""
    lead = groups[1].digits[0]
    if sizes == (3, 3, 4) and first[0] in "23456789":
        return True  # North American: 555-123-4567
    if sizes == (1, 3, 3, 4) and first == "1" and lead in "23456789":
        return True  # 1-800-555-1234
    if sizes == (5, 5) and first[0] in "6789":
        return True  # Indian mobile: 98765 43210
    if sizes == (3, 4, 4) and first[0] == "1" and first[1] in "3456789":
        return True  # Chinese mobile: 138 0013 8000
    is_code = first in ("1", "7") or first in _CC2 or (len(first) == 3 and first[:2] in _CC3_PREFIX)
    return (
        is_code
        and len(groups) >= 3
        and 10 <= digits <= 15
        and sizes[-1] >= 3
        and min(sizes[1:]) >= 2  # ISBNs have single digits: 978-3-16-148410-0
        and max(sizes) <= 8
        and any(s != 3 for s in sizes[1:])  # "1 000 000 000" is an amount
    )


# -- cutting text without splitting an address ---------------------------------------------

_BACKOFF = 64  # how far a cut may move back to land on whitespace
_NEAR = 320  # how far around a cut an address or phone number that it splits is looked for


def safe_cut(text: str, limit: int) -> int:
    """Where to cut ``text`` to at most ``limit`` characters without splitting PII.

    At whitespace within 64 characters before ``limit`` if there is any; and never
    inside an email address or phone number, which would leave a fragment ("alice@exa")
    that the detectors no longer recognise. Looks at 640 characters at most.
    """
    if len(text) <= limit:
        return len(text)
    cut = limit
    for k in range(limit - 1, max(limit - _BACKOFF, 0) - 1, -1):
        if text[k].isspace():
            cut = k
            break
    lo, hi = max(cut - _NEAR, 0), min(cut + _NEAR, len(text))
    window = text[lo:hi]
    # By start, last first: moving the cut back to one span's start can only make it
    # split a span that starts earlier, which comes later in this order.
    for a, b in sorted(email_spans(window) + phone_spans(window), reverse=True):
        if a + lo < cut < b + lo:
            cut = a + lo
    return cut
