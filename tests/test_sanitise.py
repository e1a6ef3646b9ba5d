"""The model's answer reaches an email with no link in it, before and after values go back."""

from __future__ import annotations

import pytest

from herald.enrich.pii import alias_pii
from herald.enrich.sanitise import restore_summary, sanitise_summary

PII_FIELDS = ["email", "phone", "first_name", "last_name"]


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/login",
        "http://evil.de",
        "HTTPS://EVIL.DE/X",
        "hxxp://evil.de/x",
        "https:/evil.de",
        "https:\\\\evil.de",
        "ftp://files.evil.de/a",
        "evil.de",
        "evil.co.uk",
        "www.evil.com/path",
        "evil.com/x?y=1#z",
        "evil.de:8080/login",
        "sub.evil.museum",
        "b\u00fccher.de",
        "xn--80ak6aa92e.com",
        "10.0.0.1/x",
        "10.0.0.1:8080",
        "192.168.1.1/admin?x=1",
        "https\uff1a//evil\u3002de",
        "https\uff1a\uff0f\uff0fevil\uff0ede",
        "evil\uff0ede",
        "evil\u3002de/x",
        "evil\uff61de",
        "evil\u200b.de",
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "mailto:x@evil.de",
        "tel:+4930123456",
        "evil.zip",
    ],
)
def test_any_host_like_token_is_removed_from_the_answer(link: str) -> None:
    text = sanitise_summary(f"FIRST_NAME_1 booked Yoga, see {link} now.")

    assert text == "FIRST_NAME_1 booked Yoga, see [link removed] now."


def test_a_protocol_relative_link_loses_its_host() -> None:
    assert sanitise_summary("see //evil.de/x now") == "see //[link removed] now"


@pytest.mark.parametrize(
    "address",
    [
        "attacker@evil.example",
        '"a b"@evil.de',
        "a@[10.0.0.1]",
        "a\uff20evil\uff0ede",
        "EMAIL_1@evil.de",
    ],
)
def test_an_address_in_the_answer_is_removed(address: str) -> None:
    assert sanitise_summary(f"Write to {address}.") == "Write to [email removed]."


@pytest.mark.parametrize(
    "text",
    [
        "Seats went from 10 to 12, e.g. for Yoga (i.e. the 3.5 h class).",
        "Version 1.2.3 shipped in the U.S. at 10 a.m. by Dr. Smith.",
        "The price rose 3.5% to 1,234.56 on 2026-11-29 at 10:30.",
        "Build 1.2.3.4 was tagged; St. Louis office.",
        "File report.pdf and data.csv were attached.",
        "EMAIL_1 and PHONE_2 changed; FIRST_NAME_1's class moved.",
        "Note: the status is now closed.",
        "Data: nothing else changed.",
    ],
)
def test_ordinary_words_numbers_and_aliases_are_kept(text: str) -> None:
    assert sanitise_summary(text) == text


def test_a_removed_link_keeps_the_sentences_punctuation() -> None:
    assert sanitise_summary("(see evil.de). Or evil.com/x, then stop!") == (
        "(see [link removed]). Or [link removed], then stop!"
    )


def test_a_link_around_an_address_is_removed_whole() -> None:
    assert sanitise_summary("Open http://x.evil/u/a@b.de now") == "Open [link removed] now"


# -- after the aliases are put back -------------------------------------------------------------


def test_a_field_value_that_is_a_link_does_not_come_back_through_its_alias() -> None:
    aliased = alias_pii(
        [{"new_row": {"first_name": "http://evil.de/x", "last_name": "evil.de"}}], PII_FIELDS
    )
    answer = sanitise_summary("FIRST_NAME_1 LAST_NAME_1 joined.")

    assert restore_summary(answer, aliased.aliases) == "[link removed] [link removed] joined."


def test_a_link_put_together_from_an_alias_and_the_answer_is_removed() -> None:
    answer = sanitise_summary("Visit FIRST_NAME_1.de or https://FIRST_NAME_1 today")

    assert restore_summary(answer, {"FIRST_NAME_1": "evil"}) == (
        "Visit [link removed] or [link removed] today"
    )


def test_real_email_addresses_and_phone_numbers_come_back_as_they_were() -> None:
    aliases = {
        "FIRST_NAME_1": "Alice",
        "EMAIL_1": "alice@example.com",
        "EMAIL_2": '"a b"@example.org',
        "PHONE_1": "+44 20 7946 0958",
    }

    restored = restore_summary("FIRST_NAME_1 changed EMAIL_1 to EMAIL_2 and PHONE_1.", aliases)

    assert restored == 'Alice changed alice@example.com to "a b"@example.org and +44 20 7946 0958.'


def test_a_restored_value_is_one_bounded_line() -> None:
    restored = restore_summary(
        "FIRST_NAME_1 joined.", {"FIRST_NAME_1": "A\n\u202eB " + "x" * 5_000}
    )

    assert "\n" not in restored and "\u202e" not in restored
    assert len(restored) < 400


def test_restoring_an_empty_or_alias_free_summary_changes_nothing() -> None:
    assert restore_summary("", {"EMAIL_1": "a@example.com"}) == ""
    assert restore_summary("Seats went from 10 to 12.", {}) == "Seats went from 10 to 12."


# -- bounded work ------------------------------------------------------------------------------

HOSTILE = {
    "labels without a TLD": "a." * 500_000 + "1",
    "dots": "." * 1_000_000,
    "scheme-like prefixes": "a:" * 500_000,
    "fullwidth dots": "a\uff0e" * 500_000,
    "dotted quads": "1.1.1." * 170_000,
    "at signs": "a@" * 500_000,
}


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_megabyte_of_hostile_answer_is_cut_before_it_is_scanned(hostile: str) -> None:
    # The answer is cut to 8 × max_chars before any pattern runs; the patterns are
    # linear anyway. Restoring runs the same on the cut summary.
    text = sanitise_summary(hostile)

    assert len(text) <= 600
    assert len(restore_summary(hostile, {"EMAIL_1": "a@example.com"})) <= 2_000
