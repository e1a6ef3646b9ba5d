"""Personal data is replaced by aliases before anything leaves Herald, and put back after."""

from __future__ import annotations

import copy
import json
import re

import pytest

from herald.config import ConfigError, settings_from_mapping
from herald.enrich.pii import alias_pii, truncate, unalias

PII_FIELDS = ["email", "phone", "first_name", "last_name"]


def change(**new_row: object) -> dict:
    return {"table": "members", "operation": "INSERT", "old_row": None, "new_row": new_row}


def sent(data: object) -> str:
    """What would go to the model: the aliased data as JSON."""
    return json.dumps(data, ensure_ascii=False)


# -- fields named in pii_fields --------------------------------------------------------------


def test_fields_named_in_pii_fields_are_aliased_at_any_depth_and_in_any_case() -> None:
    data = [
        {
            "table": "members",
            "new_row": {
                "id": 7,
                "First_Name": "Alice",
                "profile": {"LAST_NAME": "Liddell", "contacts": [{"Phone": "n/a"}]},
            },
        }
    ]

    result = alias_pii(data, PII_FIELDS)

    row = result.data[0]["new_row"]
    assert row["id"] == 7
    assert row["First_Name"] == "FIRST_NAME_1"
    assert row["profile"]["LAST_NAME"] == "LAST_NAME_1"
    assert row["profile"]["contacts"][0]["Phone"] == "PHONE_1"
    assert result.aliases == {"FIRST_NAME_1": "Alice", "LAST_NAME_1": "Liddell", "PHONE_1": "n/a"}


def test_the_whole_value_of_a_pii_field_is_replaced_whatever_its_type() -> None:
    data = change(phone=5551234567, first_name={"given": "Alice", "middle": "Pleasance"})

    result = alias_pii(data, PII_FIELDS)

    assert result.data["new_row"] == {"phone": "PHONE_1", "first_name": "FIRST_NAME_1"}
    assert result.aliases["PHONE_1"] == "5551234567"
    assert json.loads(result.aliases["FIRST_NAME_1"]) == {"given": "Alice", "middle": "Pleasance"}


def test_empty_pii_fields_stay_empty_because_they_hide_nothing() -> None:
    result = alias_pii(change(email=None, phone=""), PII_FIELDS)

    assert result.data["new_row"] == {"email": None, "phone": ""}
    assert result.aliases == {}


def test_a_field_value_repeated_in_free_text_is_aliased_there_too() -> None:
    data = change(first_name="Alice", note="Alice asked to move; ALICE is away on Monday.")

    result = alias_pii(data, PII_FIELDS)

    assert result.data["new_row"]["note"] == (
        "FIRST_NAME_1 asked to move; FIRST_NAME_1 is away on Monday."
    )


def test_a_field_value_is_matched_as_a_whole_word_only() -> None:
    data = change(first_name="Al", note="Also, Al called.")

    result = alias_pii(data, PII_FIELDS)

    assert result.data["new_row"]["note"] == "Also, FIRST_NAME_1 called."


# -- emails and phone numbers in any string ---------------------------------------------------


def test_emails_inside_free_text_are_aliased_in_place() -> None:
    data = change(note="Write to alice@example.com or <bob.smith+club@mail.example.co.uk>.")

    result = alias_pii(data, PII_FIELDS)

    assert result.data["new_row"]["note"] == "Write to EMAIL_1 or <EMAIL_2>."
    assert result.aliases == {
        "EMAIL_1": "alice@example.com",
        "EMAIL_2": "bob.smith+club@mail.example.co.uk",
    }


def test_emails_in_dict_keys_are_aliased_too() -> None:
    result = alias_pii({"roles": {"alice@example.com": "admin"}}, PII_FIELDS)

    assert result.data == {"roles": {"EMAIL_1": "admin"}}


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "(555) 123-4567",
        "555-123-4567",
        "+1-202-555-0143",
        "06 12 34 56 78",
        "555.123.4567",
        "1-800-555-1234",
        "020 7946 0958",
        "+44 (0)20 7946 0958",
        "0044 20 7946 0958",
        "+447946095800",
        "0612345678",
    ],
)
def test_phone_numbers_in_common_formats_are_aliased(phone: str) -> None:
    result = alias_pii(change(note=f"Call {phone} after 6."), PII_FIELDS)

    assert result.data["new_row"]["note"] == "Call PHONE_1 after 6."
    assert result.aliases == {"PHONE_1": phone}


@pytest.mark.parametrize(
    "text",
    [
        "42",
        "seats 10 12",
        "order 12345",
        "id 9876543210",
        "epoch 1700000000",
        "in 2024",
        "on 2024-01-15",
        "at 2024-01-15 10:30:00",
        "at 2024-01-15T10:30:00Z",
        "on 15/01/2024",
        "on 15.01.2024",
        "on 01.02.2024",
        "pi is 3.14159",
        "total 1234567.89",
        "ratio 0.123456789",
        "amount 1,234,567.89",
        "budget 1 000 000",
        "version 1.2.3",
        "host 192.168.1.1",
        "isbn 978-3-16-148410-0",
        "uuid 123e4567-e89b-12d3-a456-426614174000",
        "code abc123-456-7890",
        "scores 100 200 300 400",
    ],
)
def test_numbers_ids_years_dates_and_decimals_are_not_phone_numbers(text: str) -> None:
    result = alias_pii(change(note=text), PII_FIELDS)

    assert result.data["new_row"]["note"] == text
    assert result.aliases == {}


def test_a_phone_number_right_after_a_date_is_still_found() -> None:
    result = alias_pii(change(note="2024-01-15 555-123-4567"), PII_FIELDS)

    assert result.data["new_row"]["note"] == "2024-01-15 PHONE_1"


# -- aliases: stable, typed, deterministic ---------------------------------------------------


def test_the_same_value_gets_the_same_alias_wherever_it_is_found() -> None:
    data = [
        {"old_row": {"email": "alice@example.com"}, "new_row": {"email": "alice@example.com"}},
        {"new_row": {"note": "cc alice@example.com, then bob@example.com"}},
    ]

    result = alias_pii(data, PII_FIELDS)

    assert result.data[0]["old_row"]["email"] == "EMAIL_1"
    assert result.data[0]["new_row"]["email"] == "EMAIL_1"
    assert result.data[1]["new_row"]["note"] == "cc EMAIL_1, then EMAIL_2"


def test_aliases_are_typed_and_numbered_per_type() -> None:
    data = change(first_name="Alice", email="a@example.com", note="or b@example.com, 555-123-4567")

    assert set(alias_pii(data, PII_FIELDS).aliases) == {
        "FIRST_NAME_1",
        "EMAIL_1",
        "EMAIL_2",
        "PHONE_1",
    }


def test_the_same_input_gives_the_same_aliases_so_a_retry_sends_the_same_prompt() -> None:
    data = [
        change(first_name=f"Name{i}", note=f"n{i}@example.com 555-123-{i:04d}") for i in range(20)
    ]

    assert alias_pii(data, PII_FIELDS) == alias_pii(copy.deepcopy(data), PII_FIELDS)


def test_the_input_is_left_untouched() -> None:
    data = [change(email="alice@example.com", note="call 555-123-4567")]
    before = copy.deepcopy(data)

    alias_pii(data, PII_FIELDS)

    assert data == before


def test_alias_shaped_text_already_in_the_data_is_never_used_as_an_alias() -> None:
    data = change(note="template EMAIL_1 sent to alice@example.com")

    result = alias_pii(data, PII_FIELDS)

    assert result.data["new_row"]["note"] == "template EMAIL_1 sent to EMAIL_2"
    assert unalias("EMAIL_1 went to EMAIL_2", result.aliases) == (
        "EMAIL_1 went to alice@example.com"
    )


def test_no_real_value_reaches_the_aliased_data() -> None:
    reals = ["alice@example.com", "+44 20 7946 0958", "Alice", "Liddell", "(555) 123-4567"]
    data = [
        {
            "table": "members",
            "operation": "UPDATE",
            "old_row": {
                "first_name": "Alice",
                "last_name": "Liddell",
                "email": "alice@example.com",
            },
            "new_row": {
                "first_name": "Alice",
                "last_name": "Liddell",
                "bio": "Alice Liddell, +44 20 7946 0958 or (555) 123-4567, alice@example.com",
            },
        }
    ]

    text = sent(alias_pii(data, PII_FIELDS).data)

    for real in reals:
        assert real not in text


# -- unalias -----------------------------------------------------------------------------------


def test_unalias_puts_the_real_values_back() -> None:
    data = change(first_name="Alice", note="reach me at alice@example.com or 555-123-4567")
    result = alias_pii(data, PII_FIELDS)

    assert unalias("FIRST_NAME_1 left EMAIL_1 and PHONE_1.", result.aliases) == (
        "Alice left alice@example.com and 555-123-4567."
    )
    assert unalias(result.data["new_row"]["note"], result.aliases) == data["new_row"]["note"]


def test_unalias_replaces_the_longest_alias_first() -> None:
    aliases = {f"EMAIL_{i}": f"person{i}@example.com" for i in range(1, 12)}

    assert unalias("EMAIL_10, EMAIL_1 and EMAIL_11", aliases) == (
        "person10@example.com, person1@example.com and person11@example.com"
    )


def test_unalias_leaves_unknown_tokens_and_longer_words_alone() -> None:
    aliases = {"EMAIL_1": "alice@example.com"}

    assert unalias("EMAIL_2, XEMAIL_1, EMAIL_1X", aliases) == "EMAIL_2, XEMAIL_1, EMAIL_1X"


def test_unalias_never_rewrites_a_value_it_put_back() -> None:
    aliases = {"EMAIL_1": "PHONE_1@example.com", "PHONE_1": "555-123-4567"}

    assert unalias("EMAIL_1", aliases) == "PHONE_1@example.com"


# -- bounded work on hostile input -------------------------------------------------------------


def test_a_10_mb_string_is_truncated_before_it_is_scanned() -> None:
    huge = "x" * 10_000_000 + " alice@example.com"

    result = alias_pii(change(note=huge), PII_FIELDS, max_scan=100_000)

    note = result.data["new_row"]["note"]
    assert len(note) < 100_100
    assert note.endswith(f"…[truncated {len(huge) - 100_000} chars]")
    assert result.aliases == {}  # the address lay beyond the cut: never scanned, never sent


def test_truncation_cuts_at_whitespace_so_an_email_is_not_split_into_an_unknown_fragment() -> None:
    text = "y" * 90 + " alice@example.com and more"

    cut = truncate(text, 100)

    assert cut == "y" * 90 + f"…[truncated {len(text) - 90} chars]"
    assert "alice" not in cut


HOSTILE = {
    # a naive email regex retries the local part at every starting position: O(n²)
    "long local part, no domain": "a" * 50_000 + "@",
    "dots and letters, no @": "a." * 50_000,
    "endless labels, no TLD": "a@" + "b." * 49_000 + "1",
    "at signs": "a@" * 50_000,
    # a naive phone regex retries every digit group
    "single digits": "1 " * 50_000,
    "open brackets": "(1" * 50_000,
    "dashed pairs": "12-" * 33_000,
    "alias-shaped tokens": "A_1 " * 25_000,
}


@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_strings_built_to_make_naive_patterns_backtrack_still_return_unchanged(
    hostile: str,
) -> None:
    # Correct by construction (possessive, unambiguous patterns), so no timing assertion;
    # each case runs in well under a second (see ``time python -m pytest`` on this file).
    result = alias_pii({"note": hostile}, PII_FIELDS)

    assert result.data == {"note": hostile}
    assert result.aliases == {}


def test_deeply_nested_data_is_cut_instead_of_crashing_the_worker() -> None:
    data: object = "alice@example.com"
    for _ in range(5_000):
        data = [data]

    text = sent(alias_pii(data, PII_FIELDS).data)

    assert "nested too deep" in text
    assert "alice@example.com" not in text
    assert re.fullmatch(r'[\[]+"…\[nested too deep\]"[\]]+', text)


# -- field names: any form, shipped synonyms, configured synonyms -------------------------------


@pytest.mark.parametrize(
    ("key", "alias"),
    [
        ("firstName", "FIRST_NAME_1"),
        ("first-name", "FIRST_NAME_1"),
        ("FIRST_NAME", "FIRST_NAME_1"),
        ("FirstName", "FIRST_NAME_1"),
        ("first name", "FIRST_NAME_1"),
        ("given_name", "FIRST_NAME_1"),
        ("forename", "FIRST_NAME_1"),
        ("surname", "LAST_NAME_1"),
        ("familyName", "LAST_NAME_1"),
        ("last_name2", "LAST_NAME_1"),
        ("mobile_number", "PHONE_1"),
        ("cellPhone", "PHONE_1"),
        ("telephone", "PHONE_1"),
        ("phone_1", "PHONE_1"),
        ("e-mail", "EMAIL_1"),
        ("emailAddress", "EMAIL_1"),
        ("guardian_first_name", "FIRST_NAME_1"),
        ("billing_email", "EMAIL_1"),
        ("homePhone", "PHONE_1"),
    ],
)
def test_a_pii_field_is_found_by_its_form_and_its_synonyms(key: str, alias: str) -> None:
    result = alias_pii(change(**{key: "Zed"}), PII_FIELDS)

    assert result.data["new_row"] == {key: alias}
    assert result.aliases == {alias: "Zed"}


@pytest.mark.parametrize("key", ["class_name", "name", "excel_cell", "order_number", "title"])
def test_generic_words_are_not_pii_fields_unless_configured(key: str) -> None:
    assert alias_pii(change(**{key: "Yoga"}), PII_FIELDS).aliases == {}


def test_synonyms_apply_only_to_the_fields_that_are_configured() -> None:
    result = alias_pii(change(surname="Liddell", mobile="555"), ["last_name"])

    assert result.data["new_row"] == {"surname": "LAST_NAME_1", "mobile": "555"}


def test_configured_synonyms_add_columns_under_an_alias_type() -> None:
    data = change(handy="0171 1234567 8", nachname="Liddell", iban_nr="DE89370400440532013000")
    synonyms = {"phone": ["handy"], "surname": ["nachname"], "iban": ["iban_nr"]}

    result = alias_pii(data, [], synonyms=synonyms)

    assert result.data["new_row"] == {
        "handy": "PHONE_1",
        "nachname": "LAST_NAME_1",
        "iban_nr": "IBAN_1",
    }


def test_a_boolean_in_a_pii_field_hides_nothing_and_is_kept() -> None:
    result = alias_pii(change(has_phone=True, email=False), PII_FIELDS)

    assert result.data["new_row"] == {"has_phone": True, "email": False}


def test_pii_synonyms_are_read_from_ai_and_extended_per_route() -> None:
    settings = settings_from_mapping(
        {
            "ai": {"pii_fields": ["email"], "pii_synonyms": {"phone": ["handy"]}},
            "routes": [
                {"name": "de", "pii_synonyms": {"phone": ["telefon"], "last_name": ["nachname"]}},
                {"name": "plain"},
            ],
        },
        {},
    )

    assert settings.ai.pii_fields == ("email",)
    assert settings.pii_synonyms_for("de") == {
        "phone": ("handy", "telefon"),
        "last_name": ("nachname",),
    }
    assert settings.pii_synonyms_for("plain") == {"phone": ("handy",)}
    assert settings.pii_synonyms_for("removed since") == {"phone": ("handy",)}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"ai": {"pii_fields": "email"}}, r"\[ai\] pii_fields must be a list of column names"),
        ({"ai": {"pii_fields": ["email", 3]}}, r"\[ai\] pii_fields must be a list"),
        ({"ai": {"pii_fields": [""]}}, r"\[ai\] pii_fields must be a list"),
        ({"ai": {"pii_synonyms": ["handy"]}}, r"\[ai\] pii_synonyms must be a table of lists"),
        ({"ai": {"pii_synonyms": {"phone": "handy"}}}, r"\[ai\] pii_synonyms.phone must be a list"),
        (
            {"routes": [{"name": "de", "pii_synonyms": {"phone": [1]}}]},
            r"route 'de': pii_synonyms.phone must be a list of column names",
        ),
    ],
)
def test_malformed_pii_configuration_is_refused_naming_the_option(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping(raw, {})


# -- numbers, JSON in text, key/value text ----------------------------------------------------


def test_integers_of_9_to_15_digits_are_aliased_wherever_they_are() -> None:
    data = change(contact=27825551234, fax=None, amount=12345678, big=10**15, neg=-27825551234)

    result = alias_pii(data, PII_FIELDS)

    assert result.data["new_row"] == {
        "contact": "NUMBER_1",
        "fax": None,
        "amount": 12345678,
        "big": 10**15,
        "neg": -27825551234,
    }
    assert result.aliases == {"NUMBER_1": "27825551234"}


def test_a_string_of_9_to_15_digits_is_aliased_like_the_integer_it_holds() -> None:
    result = alias_pii(change(msisdn_text="27825551234", local="0825551234", n="12345678"), [])

    assert result.data["new_row"] == {
        "msisdn_text": "NUMBER_1",
        "local": "PHONE_1",
        "n": "12345678",
    }


def test_json_held_in_a_text_column_is_aliased_inside_and_stays_a_string() -> None:
    data = change(payload='{"first_name": "Zed", "contact": {"mobile": "x"}, "note": "Zed left"}')

    result = alias_pii(data, PII_FIELDS)

    payload = result.data["new_row"]["payload"]
    assert isinstance(payload, str)
    assert json.loads(payload) == {
        "first_name": "FIRST_NAME_1",
        "contact": {"mobile": "PHONE_1"},
        "note": "FIRST_NAME_1 left",
    }
    assert "Zed" not in sent(result.data)


def test_a_json_array_in_text_is_aliased_too() -> None:
    result = alias_pii(change(log='[{"email": "a@example.com"}, 27825551234]'), PII_FIELDS)

    assert json.loads(result.data["new_row"]["log"]) == [{"email": "EMAIL_1"}, "NUMBER_1"]


@pytest.mark.parametrize(
    "text",
    [
        '{"first_name": "Zed", "note": "cut off here',  # cut JSON does not parse
        "{'first_name': 'Zed', 'x': 1}",  # a Python dict's repr
        'first_name="Zed" moved',  # logfmt
        "first_name=Zed moved",  # logfmt, unquoted
        "first_name: Zed\nlast_name: null",  # YAML
        '{\\"first_name\\": \\"Zed\\"}',  # JSON escaped inside JSON
    ],
)
def test_key_value_pairs_in_text_that_is_not_json_are_aliased(text: str) -> None:
    result = alias_pii(change(raw=text), PII_FIELDS)

    assert "Zed" not in result.data["new_row"]["raw"]
    assert result.aliases == {"FIRST_NAME_1": "Zed"}


def test_text_that_only_looks_like_json_is_kept_as_it_is() -> None:
    for text in ("[not json]", "{x}", "[" * 40_000 + "]" * 40_000, '{"a": 1} trailing'):
        assert alias_pii({"t": text}, PII_FIELDS).data == {"t": text}


# -- the phone and email forms a probe sent unchanged ----------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "0027825551234",
        "00 27 82 555 1234",
        "27 82 555 1234",
        "082/555-1234",
        "030/1234567",
        "082\u2010555\u20101234",
        "082\u2011555\u20111234",
        "082\u2012555\u20121234",
        "082\u2013555\u20131234",
        "082\u2014555\u20141234",
        "082\u2015555\u20151234",
        "+27\u201382\u2013555\u20131234",
        "98765 43210",
        "138 0013 8000",
        "\uff0b27 82 555 1234",
        "\uff10\uff18\uff12 \uff15\uff15\uff15 \uff11\uff12\uff13\uff14",
    ],
)
def test_phone_numbers_a_probe_sent_unchanged_are_aliased(phone: str) -> None:
    result = alias_pii(change(note=f"Call {phone} after 6."), PII_FIELDS)

    assert result.data["new_row"]["note"] == "Call PHONE_1 after 6."
    assert result.aliases == {"PHONE_1": phone}


@pytest.mark.parametrize(
    "email",
    [
        '"john doe"@example.com',
        '"john\\"doe"@example.com',
        "user@[192.168.0.1]",
        "user@[IPv6:2001:db8::1]",
        "john\uff20example.com",
        "john\uff20example\uff0ecom",
        "john@example\u3002com",
        "o'brien@example.ie",
        "user@xn--80ak6aa92e.xn--p1ai",
        "jos\u00e9@b\u00fccher.de",
    ],
)
def test_email_addresses_a_probe_sent_unchanged_are_aliased(email: str) -> None:
    result = alias_pii(change(note=f"Write to {email} today."), PII_FIELDS)

    assert result.data["new_row"]["note"] == "Write to EMAIL_1 today."
    assert result.aliases == {"EMAIL_1": email}


def test_a_quote_around_an_address_is_not_part_of_it() -> None:
    result = alias_pii(change(note="mail 'alice@example.com' now"), PII_FIELDS)

    assert result.data["new_row"]["note"] == "mail 'EMAIL_1' now"


# -- bounded work per notification ------------------------------------------------------------


def test_only_about_max_chars_of_a_notification_is_copied_and_aliased() -> None:
    changes = [
        change(email=f"member{i}@example.com", note=f"call 020 7946 {i:04d}") for i in range(2_000)
    ]

    result = alias_pii(changes, PII_FIELDS, max_chars=8_000)

    kept = result.data[:-1]
    assert 50 < len(kept) < 200
    assert result.data[-1] == f"…[{2_000 - len(kept)} more changes omitted]"
    assert len(result.aliases) <= 2 * len(kept)  # nothing past the cut was aliased
    assert len(sent(result.data)) < 8_000 * 1.5


def test_the_cut_is_deterministic_and_a_single_huge_change_is_cut_inside() -> None:
    huge = change(
        note="word " * 50_000, rows=[{"email": f"m{i}@example.com"} for i in range(5_000)]
    )

    first = alias_pii([huge, change(id=2)], PII_FIELDS, max_chars=8_000)

    assert first == alias_pii([huge, change(id=2)], PII_FIELDS, max_chars=8_000)
    assert len(sent(first.data)) < 8_000 * 1.5
    assert first.data[-1] == "…[1 more changes omitted]"
    assert "truncated" in first.data[0]["new_row"]["note"]


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        alias_pii([], PII_FIELDS, max_chars=0)


def test_a_cut_never_splits_an_email_or_a_phone_number_into_an_unaliased_fragment() -> None:
    for text in ("x" * 94 + "<alice@example.com>", "x" * 94 + ":+44-20-7946-0958"):
        cut = truncate(text, 100)

        assert cut == text[:95] + f"…[truncated {len(text) - 95} chars]"


# -- bounded work on hostile input, in the new forms --------------------------------------------

MEGABYTE_HOSTILE = {
    "quotes": '"' * 1_000_000,
    "open quoted local parts": '"a' * 500_000,
    "fullwidth at signs": "a\uff20" * 500_000,
    "slashes between digits": "0/" * 500_000,
    "unicode dashes between digits": "1\u2013" * 500_000,
    "keys without values": '"a":' * 250_000,
    "bare keys and words": ("a" * 63 + "=") * 15_600,
    "opening braces": "{" * 1_000_000,
    "opening brackets in json": "[" * 999_999 + "]",
    "bracketed literals": "a@[" * 333_000,
}


@pytest.mark.parametrize("hostile", MEGABYTE_HOSTILE.values(), ids=MEGABYTE_HOSTILE.keys())
def test_a_megabyte_built_against_the_new_detectors_is_scanned_whole(hostile: str) -> None:
    # Linear by construction (see herald/enrich/pii_detect.py); timings are benchmarks'
    # business. Each case scans the whole megabyte (max_scan above its size).
    result = alias_pii({"note": hostile}, PII_FIELDS, max_scan=1_100_000)

    assert result.aliases == {}
    assert result.data == {"note": hostile}
