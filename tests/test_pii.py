"""Personal data is replaced by aliases before anything leaves Herald, and put back after."""

from __future__ import annotations

import copy
import json
import re

import pytest

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
