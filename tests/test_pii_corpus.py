"""A corpus of personal data in many forms and places: none of it reaches the model.

Each case is a change as the enrich step would send it. What is checked is the user
message the model would receive (``changes_message``, the real prompt builder): the real
value appears in it in no form (as written, JSON-escaped once or twice), it was aliased
as a whole (one alias holds it), and ``unalias`` puts it back. The last test counts the
leaks across the corpus and prints the count. The sanity half checks that ordinary
numbers (prices, years, dates, ids under 9 digits) are left alone.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, NamedTuple

import pytest

from herald.enrich.pii import alias_pii, unalias
from herald.enrich.prompts import changes_message

PII_FIELDS = ["email", "phone", "first_name", "last_name"]

PHONES = [
    # international, with "+"
    "+1 202-555-0143", "+1 (202) 555-0143", "+1.202.555.0143", "+1-800-555-0199",
    "+44 20 7946 0958", "+44 7700 900123", "+44 (0)20 7946 0958", "+33 6 12 34 56 78",
    "+33 1 23 45 67 89", "+49 30 1234567", "+49 (0)30 1234 5678", "+49-151-12345678",
    "+27 82 555 1234", "+27825551234", "+91 98765 43210", "+91-98765-43210",
    "+86 138 0013 8000", "+81 90-1234-5678", "+81 3-1234-5678", "+82 10-1234-5678",
    "+55 11 91234-5678", "+52 55 1234 5678", "+61 4 1234 5678", "+61 2 9876 5432",
    "+64 21 123 4567", "+7 912 345-67-89", "+7 (912) 345-67-89", "+34 612 34 56 78",
    "+39 06 1234 5678", "+31 6 12345678", "+46 70 123 45 67", "+47 412 34 567",
    "+45 12 34 56 78", "+353 87 123 4567", "+351 912 345 678", "+48 512 345 678",
    "+90 532 123 45 67", "+971 50 123 4567", "+966 50 123 4567", "+972 52-123-4567",
    "+20 10 1234 5678", "+234 803 123 4567", "+254 712 345678", "+62 812-3456-7890",
    "+63 917 123 4567", "+65 9123 4567", "+852 9123 4567", "+886 912 345 678",
    "+380 67 123 4567", "+41 79 123 45 67", "+43 664 1234567", "+32 470 12 34 56",
    "+420 601 123 456", "+36 20 123 4567", "+30 691 234 5678", "+357 99 123456",
    "\uff0b27 82 555 1234", "+27\u201382\u2013555\u20131234",
    # international, with "00" or a country code alone
    "0027825551234", "00 27 82 555 1234", "0044 20 7946 0958", "0049 30 1234567",
    "001 202 555 0143", "0033 6 12 34 56 78", "0033612345678", "27 82 555 1234",
    "44 20 7946 0958", "49 30 1234 5678", "91 98765 43210", "86 138 0013 8000",
    "1 202 555 0143",
    # national, with a trunk 0
    "020 7946 0958", "07700 900123", "082 555 1234", "082-555-1234", "082/555-1234",
    "030/1234567", "030 1234567", "0301234567", "089 1234 5678", "0151 12345678",
    "06 12 34 56 78", "01 23 45 67 89", "0612345678", "(030) 1234567", "(020) 7946 0958",
    "011 123 4567", "03-1234-5678", "090-1234-5678", "02 9876 5432", "0412 345 678",
    "021 123 4567", "0800 123 4567", "010-1234-5678",
    # every dash and space people paste
    "082\u2010555\u20101234", "082\u2011555\u20111234", "082\u2012555\u20121234",
    "082\u2013555\u20131234", "082\u2014555\u20141234", "082\u2015555\u20151234",
    "082\u2212555\u22121234", "082\u00a0555\u00a01234", "082\u2009555\u20091234",
    "082\u202f555\u202f1234",
    # North American, Indian, Chinese, other digits
    "(555) 123-4567", "555-123-4567", "555.123.4567", "555 123 4567", "1-800-555-1234",
    "1 (800) 555-1234", "98765 43210", "98765-43210", "138 0013 8000", "138-0013-8000",
    "\uff10\uff18\uff12 \uff15\uff15\uff15 \uff11\uff12\uff13\uff14",
    "\u0660\u0668\u0662 \u0665\u0665\u0665 \u0661\u0662\u0663\u0664",
]  # fmt: skip

EMAILS = [
    "alice@example.com", "Alice.Smith@Example.COM", "bob.smith+club@mail.example.co.uk",
    "first_last@sub.domain.org", "user-name@my-domain.net", "x@y.io", "o'brien@example.ie",
    '"john doe"@example.com', '"john\\"doe"@example.com', '"a@b"@example.com',
    "user@[192.168.0.1]", "user@[IPv6:2001:db8::1]", "john\uff20example.com",
    "john\uff20example\uff0ecom", "john@example\u3002com", "alice\ufe6bexample.com",
    "alice@example\uff61com",
    "\uff4a\uff4f\uff48\uff4e\uff20\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d",
    "jos\u00e9@b\u00fccher.de", "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
    "user@xn--80ak6aa92e.xn--p1ai", "user%tag@example.com", "a.b.c.d@e.f.g.example",
    "UPPER@EXAMPLE.ORG", "name@localhost.localdomain", "alice@example.museum",
    "very.long.local.part.with.many.dots@example.com", "digits123@456.example.com",
    "\u00e5sa.l\u00f8vstad@eksempel.no",
    "\u0438\u0432\u0430\u043d@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444",
]  # fmt: skip

# Text around a value, and where the text sits in a change.
CONTEXTS = [
    "Contact {v} please.",
    "<{v}>",
    "({v}), or mailto:{v}",
    "'{v}'",
    "{v}",
]


def in_note(text: str) -> dict:
    return {"table": "members", "operation": "INSERT", "old_row": None, "new_row": {"note": text}}


def in_nested_history(text: str) -> dict:
    row = {"id": 7, "meta": {"history": [{"by": "system", "text": text}, {"n": 1}]}}
    return {"table": "members", "operation": "UPDATE", "old_row": {"id": 7}, "new_row": row}


def in_json_text(text: str) -> dict:
    payload = json.dumps({"contact": {"text": text}, "tags": ["x", text]})
    return {
        "table": "events",
        "operation": "INSERT",
        "old_row": None,
        "new_row": {"payload": payload},
    }


def as_a_key(text: str) -> dict:
    return {
        "table": "acl",
        "operation": "INSERT",
        "old_row": None,
        "new_row": {"roles": {text: "admin"}},
    }


PLACES = [in_note, in_nested_history, in_json_text, as_a_key]


class Case(NamedTuple):
    id: str
    data: list[dict]
    real: str


def row(**new_row: Any) -> list[dict]:
    return [{"table": "members", "operation": "INSERT", "old_row": None, "new_row": new_row}]


def corpus() -> list[Case]:
    cases: list[Case] = []
    values = [("phone", p) for p in PHONES] + [("email", e) for e in EMAILS]
    for n, (kind, value) in enumerate(values):
        # every value in a plain note; and in two more places, in turn
        for place in (in_note, PLACES[1 + n % 3], PLACES[1 + (n + 1) % 3]):
            context = CONTEXTS[n % len(CONTEXTS)] if place is not as_a_key else "{v}"
            cases.append(
                Case(f"{kind}-{n}-{place.__name__}", [place(context.format(v=value))], value)
            )
    names = [
        "Zebedee",
        "Anne-Marie",
        "O'Neil",
        "Jos\u00e9",
        "S\u00f8ren",
        "Nguy\u1ec5n",
        "\u674e\u5c0f\u9f99",
    ]
    keys = [
        "first_name", "firstName", "FirstName", "FIRST_NAME", "first-name", "first name",
        "given_name", "givenName", "forename", "fname", "vorname", "pr\u00e9nom", "last_name",
        "lastName", "surname", "family_name", "familyName", "lname", "nachname", "maiden_name",
        "guardian_first_name", "parent_last_name", "customer_email", "emailAddress", "e_mail",
        "mail", "phone", "mobile", "mobile_number", "cellPhone", "cell", "tel", "telephone",
        "phone_number", "phoneNumber", "home_phone", "work_phone2", "fax", "contact_number",
        "msisdn",
    ]  # fmt: skip
    for n, key in enumerate(keys):
        name = names[n % len(names)]
        cases.append(Case(f"field-{key}", row(id=n, **{key: name}), name))
        nested = row(id=n, people=[{"role": "guardian", "contact": {key: name}}])
        cases.append(Case(f"nested-field-{key}", nested, name))
    for n, name in enumerate(names):
        note = f"{name} asked to move; {name.upper()} is away. {name}'s class."
        cases.append(Case(f"field-and-free-text-{n}", row(first_name=name, note=note), name))
        payload = json.dumps({"person": {"lastName": name}, "note": f"by {name}"})
        cases.append(Case(f"json-text-field-{n}", row(payload=payload), name))
        pairs = [
            f'{{"surname": "{name}", "note": "cut here',
            repr({"given_name": name, "x": 1}),
            f'first_name="{name}" moved',
            f"surname: {name}\nstatus: moved",
        ]
        for k, text in enumerate(pairs):
            cases.append(Case(f"key-value-text-{n}-{k}", row(raw=text), name))
    integers: list[tuple[str, Any]] = [
        ("contact", 27825551234), ("msisdn", 447946095800), ("n", 123456789),
        ("n", 999999999999999), ("n", 4915112345678), ("n", 5551234567),
        ("amount", Decimal("27825551234")), ("n", 27825551234.0),
    ]  # fmt: skip
    for n, (key, number) in enumerate(integers):
        real = str(int(number))
        cases.append(Case(f"integer-{n}", row(**{key: number}), real))
        cases.append(Case(f"nested-integer-{n}", row(x={"y": [1, {"z": number}]}), real))
        cases.append(Case(f"integer-as-text-{n}", row(code=real), real))
        cases.append(
            Case(f"integer-in-json-text-{n}", row(j=json.dumps({"v": number}, default=str)), real)
        )
    return cases


CORPUS = corpus()


def escaped(real: str) -> set[str]:
    """The forms a value takes in the prompt: as written, JSON-escaped once, twice."""
    once = json.dumps(real, ensure_ascii=False)[1:-1]
    twice = json.dumps(once, ensure_ascii=False)[1:-1]
    return {real, once, twice}


def leaks(case: Case) -> list[str]:
    """What is wrong with one case: empty when nothing leaked and everything came back."""
    aliased = alias_pii(case.data, PII_FIELDS, max_chars=8_000)
    prompt = changes_message(aliased.data)
    problems = [f"{form!r} in the prompt" for form in escaped(case.real) if form in prompt]
    if not any(case.real in value for value in aliased.aliases.values()):
        problems.append(f"{case.real!r} was not aliased as a whole: {aliased.aliases}")
    if case.real not in unalias(prompt, aliased.aliases):
        problems.append(f"{case.real!r} does not come back through unalias")
    return problems


def test_the_corpus_has_at_least_200_cases_across_formats_and_places() -> None:
    assert len(CORPUS) >= 200
    assert len(PHONES) >= 100 and len(EMAILS) >= 30


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_no_personal_value_reaches_the_model_and_unalias_restores_it(case: Case) -> None:
    assert leaks(case) == []


def test_the_whole_corpus_reports_0_leaks(capsys: pytest.CaptureFixture[str]) -> None:
    found = {case.id: problems for case in CORPUS if (problems := leaks(case))}
    with capsys.disabled():
        print(f"\nPII corpus: {len(CORPUS)} cases, {len(found)} leaks")
    assert found == {}


# -- ordinary numbers are not personal data ----------------------------------------------------

ORDINARY_TEXT = [
    "\u20ac1,234.56", "$99.99", "price 1299.00", "in 2026", "on 2026-11-29", "29.11.2026",
    "11/29/2026", "2026/11/29", "at 10:30:00", "2026-11-29T10:30:00Z", "2026-11-29 10:30",
    "order 12345678", "#1234567", "id 87654321", "room 101", "ZIP 10115", "zip 90210-1234",
    "3.14159", "1.2.3", "v2.0.1", "10-20 people", "pages 100-200", "1920x1080",
    "52.5200, 13.4050", "1 000 000", "12 345 678", "1 000 000 000", "50%",
    "ISBN 978-3-16-148410-0", "ISBN 978-0-306-40615-7", "192.168.1.1", "10:00-12:00",
    "Mon 9-17", "+5 points", "-3 degrees", "score 3-1", "1234 5678", "CVE-2024-6923",
    "RFC 8058", "HTTP 500", "port 5432", "UTF-8", "x = 12345678", "seats 10 12 14 16",
    "scores 100 200 300 400", "epoch 1700000000", "id 9876543210", "amount 1,234,567.89",
    "ratio 0.123456789", "2024-01-15 10", "15.01.2024 10:30", "e.g. 3.5 h",
]  # fmt: skip
ORDINARY_VALUES: list[Any] = [12345678, 2026, 1299.99, 0, 0.123456789, -5, 10**8 - 1, True, None]


@pytest.mark.parametrize("text", ORDINARY_TEXT)
def test_ordinary_numbers_in_text_are_not_aliased(text: str) -> None:
    data = row(note=text)

    result = alias_pii(data, PII_FIELDS)

    assert result.aliases == {}
    assert result.data == data


def test_ordinary_numbers_in_columns_are_not_aliased() -> None:
    data = row(**{f"c{i}": v for i, v in enumerate(ORDINARY_VALUES)}, title="Yoga", seats=12)

    result = alias_pii(data, PII_FIELDS)

    assert result.aliases == {}
    assert result.data == data
