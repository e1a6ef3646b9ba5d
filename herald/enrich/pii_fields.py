"""Which dict keys name personal data: ``pii_fields`` matched by form, not by spelling.

A column called ``firstName``, ``first-name``, ``FIRST_NAME`` or ``given_name`` holds the
same thing as one called ``first_name``; a schema written by someone else will use any
of them. So a key is split into words (at ``_``, ``-``, spaces, dots, camelCase and
letter/digit boundaries), folded to lower case, trailing numbers dropped (``phone2``,
``email_1``), and compared joined (``firstname``) with the configured fields and their
synonyms. The shipped groups below ("surname" is a ``last_name``) apply to every field
of a group named in ``pii_fields``; ``pii_synonyms`` in herald.toml adds more.

A key also matches when its last words are a field's (``guardian_first_name``,
``billing_email``, ``home_phone``), except for words too generic to mean personal data
on their own (``name``, ``cell``, ``number``...), which match only whole keys.

The alias a field's values get is named after its group (``surname`` -> ``LAST_NAME_1``),
so the model sees one kind of placeholder per kind of data.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["DEFAULT_SYNONYMS", "PiiFields", "field_matcher", "field_words"]

#: Shipped synonym groups: the first name of a group is its alias type. A group applies
#: when any of its names is in ``pii_fields`` (or in ``pii_synonyms``).
DEFAULT_SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "email": (
        "e_mail", "email_address", "e_mail_address", "mail", "mail_address", "emailadresse",
        "correo", "courriel",
    ),
    "phone": (
        "phone_number", "phone_no", "phone_num", "telephone", "telephone_number", "tel",
        "tel_no", "tel_number", "mobile", "mobile_number", "mobile_phone", "mobile_no",
        "cell", "cellphone", "cell_number", "msisdn", "fax", "fax_number", "landline",
        "whatsapp", "contact_number", "telefon", "telefono", "telephone_mobile",
    ),
    "first_name": (
        "given_name", "forename", "fname", "christian_name", "first_names", "vorname",
        "prenom", "nombre",
    ),
    "last_name": (
        "surname", "family_name", "lname", "maiden_name", "last_names", "nachname",
        "apellido", "nom_de_famille",
    ),
    "full_name": ("fullname", "display_name", "contact_name", "complete_name"),
    "middle_name": ("middle_names", "middle_initial"),
    "date_of_birth": ("dob", "birth_date", "birthdate", "birthday", "born_on"),
    "address": (
        "street_address", "postal_address", "home_address", "mailing_address",
        "address_line", "street",
    ),
    "national_id": (
        "ssn", "social_security_number", "national_insurance_number", "nino", "tax_id",
        "passport_number", "id_number", "personal_number",
    ),
    "iban": ("bank_account", "account_number", "bank_account_number"),
}  # fmt: skip

# Words that mean personal data only as a whole key: "class_name", "excel_cell" and
# "order_number" are not personal, "name" or "cell" alone may be.
_WHOLE_KEY_ONLY = frozenset(
    {"name", "cell", "number", "id", "code", "key", "title", "address", "mail", "date",
     "type", "fax", "street", "tel", "first", "last"}
)  # fmt: skip
_MAX_KEY = 128  # longer keys are text, not column names


def field_words(name: str) -> tuple[str, ...]:
    """``"homePhone2"`` -> ``("home", "phone")``: the words of a key, folded, numbers dropped.

    One pass over at most ``_MAX_KEY`` characters; no regex.
    """
    words: list[str] = []
    word: list[str] = []
    prev = ""
    text = name[:_MAX_KEY]
    if not text.isascii():  # "prénom", fullwidth "ｅｍａｉｌ": compared without accents
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    for i, ch in enumerate(text):
        if not ch.isalnum():
            prev = ""
            if word:
                words.append("".join(word))
                word = []
            continue
        nxt = text[i + 1] if i + 1 < len(text) else ""
        boundary = bool(word) and (
            (prev.islower() and ch.isupper())  # firstName
            or (prev.isupper() and ch.isupper() and nxt.islower())  # HTTPServer, EMail
            or (prev.isdigit() != ch.isdigit())  # phone2, address1
        )
        if boundary:
            words.append("".join(word))
            word = []
        word.append(ch)
        prev = ch
    if word:
        words.append("".join(word))
    folded = [w.casefold() for w in words]
    while folded and folded[-1].isdigit():
        folded.pop()
    return tuple(folded)


def _joined(name: str) -> str:
    return "".join(field_words(name))


#: Keys whose decision one matcher remembers: column names are few and come back with
#: every change of a table; keys of free-form JSON beyond this are decided each time.
_REMEMBERED_KEYS = 4096


@dataclass(frozen=True)
class PiiFields:
    """A compiled field matcher: ``kind_of(key)`` is the alias type, or None.

    Each key's decision is remembered for the process (up to ``_REMEMBERED_KEYS``), so a
    table's column names are split into words once, not once per change."""

    whole: Mapping[str, str]  # joined words -> alias type
    suffix: Mapping[str, str]  # joined words that may also end a longer key -> alias type
    _decided: dict[str, str | None] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def kind_of(self, key: str) -> str | None:
        try:
            return self._decided[key]
        except KeyError:
            pass
        kind = self._decide(key)
        if len(self._decided) < _REMEMBERED_KEYS:
            self._decided[key] = kind  # a lost race writes the same decision
        return kind

    def _decide(self, key: str) -> str | None:
        if len(key) > _MAX_KEY:
            return None
        words = field_words(key)
        if not words:
            return None
        kind = self.whole.get("".join(words))
        if kind is not None or not self.suffix:
            return kind
        for i in range(1, len(words)):
            kind = self.suffix.get("".join(words[i:]))
            if kind is not None:
                return kind
        return None


def field_matcher(
    fields: Collection[str] | PiiFields,
    synonyms: Mapping[str, Iterable[str]] | None = None,
) -> PiiFields:
    """The matcher for ``fields`` (names from ``pii_fields``) plus ``synonyms``.

    ``synonyms`` maps an alias type to more column names (``{"phone": ["handy"]}``);
    every name in it, the type included, is aliased. Cached: configurations are few.
    """
    if isinstance(fields, PiiFields):
        return fields
    extra = tuple(sorted((str(k), tuple(map(str, v))) for k, v in (synonyms or {}).items()))
    return _compile(tuple(str(f) for f in fields), extra)


@functools.lru_cache(maxsize=64)
def _compile(fields: tuple[str, ...], extra: tuple[tuple[str, tuple[str, ...]], ...]) -> PiiFields:
    groups: dict[str, set[str]] = {}  # alias type (joined) -> names (joined)
    kinds: dict[str, str] = {}  # alias type (joined) -> its display form
    for kind, names in DEFAULT_SYNONYMS.items():
        groups[_joined(kind)] = {_joined(kind), *map(_joined, names)}
        kinds[_joined(kind)] = _type_name(kind)
    member_of = {name: kind for kind, names in groups.items() for name in names}
    whole: dict[str, str] = {}

    def add(kind: str, names: Iterable[str]) -> None:
        for name in names:
            if name:
                whole.setdefault(name, kinds[kind])

    for field in fields:
        name = _joined(field)
        if not name:
            continue
        group = member_of.get(name)
        if group is None:  # a field of the operator's own: its own alias type
            kinds.setdefault(name, _type_name(field))
            add(name, [name])
        else:
            add(group, sorted(groups[group]))
    for kind_name, names in extra:
        kind = _joined(kind_name)
        if not kind:
            continue
        kind = member_of.get(kind, kind)
        kinds.setdefault(kind, _type_name(kind_name))
        add(kind, sorted({kind, *groups.get(kind, ()), *map(_joined, names)}))
    suffix = {
        name: kind for name, kind in whole.items() if name not in _WHOLE_KEY_ONLY and len(name) >= 3
    }
    return PiiFields(whole, suffix)


def _type_name(field: str) -> str:
    """``"firstName"`` -> ``"FIRST_NAME"``: the alias type a field's values get."""
    kind = "_".join(field_words(field)).upper()[:32].strip("_")
    if not kind or not kind[0].isalpha():
        kind = f"PII_{kind}".rstrip("_")
    return kind
