"""herald.toml as one model: its sections, each refusing options it does not know, and a
section it does not know refused too (`[aii]`).

Before validation, each unnamed route is named by its position (`routes[2]`) and each
`[retries.<actor>]` table is laid over that actor's defaults, so a file names only what it
changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, TypeAdapter, model_validator

from herald.config.api import ApiSection
from herald.config.routes import Route, named_routes
from herald.config.sections import (
    DEFAULT_RETRIES,
    AISettings,
    BreakerSettings,
    BrokerSettings,
    LimitSettings,
    MailSection,
    OrchestratorSettings,
    RetentionSettings,
    RetryPolicy,
)
from herald.config.values import Must, section


def _default_retries() -> dict[str, RetryPolicy]:
    return dict(DEFAULT_RETRIES)


def _known_actor(actor: str) -> str:
    if actor not in DEFAULT_RETRIES:
        raise ValueError(f"unknown actor {actor!r}")
    return actor


def _over_defaults(retries: Any) -> Any:
    """`[retries.<actor>]` tables laid over the actors' defaults; anything else as it is."""
    if not isinstance(retries, Mapping):
        return retries
    merged: dict[str, Any] = dict(DEFAULT_RETRIES)
    for actor, options in retries.items():
        known = DEFAULT_RETRIES.get(actor)
        if known is not None and isinstance(options, Mapping):
            options = {**dataclasses.asdict(known), **options}
        merged[actor] = options
    return merged


@section
class HeraldToml:
    """The whole of herald.toml; every section may be left out."""

    mail: MailSection = MailSection()
    ai: AISettings = AISettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    breakers: BreakerSettings = BreakerSettings()
    limits: LimitSettings = LimitSettings()
    retention: RetentionSettings = RetentionSettings()
    broker: BrokerSettings = BrokerSettings()
    api: ApiSection = ApiSection()
    retries: Annotated[
        dict[Annotated[str, AfterValidator(_known_actor)], RetryPolicy],
        Must("a table of [retries.<actor>] tables"),
    ] = dataclasses.field(default_factory=_default_retries)
    routes: Annotated[tuple[Route, ...], Must("an array of tables ([[routes]])")] = ()

    @model_validator(mode="before")
    @classmethod
    def _prepare(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        prepared = dict(data)
        if "routes" in prepared:
            prepared["routes"] = named_routes(prepared["routes"])
        if "retries" in prepared:
            prepared["retries"] = _over_defaults(prepared["retries"])
        return prepared

    @model_validator(mode="after")
    def _route_names_are_unique(self) -> HeraldToml:
        seen: set[str] = set()
        for route in self.routes:
            if route.name in seen:
                raise ValueError(f"route names must be unique: {route.name!r} is used twice")
            seen.add(route.name)
        return self


DOCUMENT = TypeAdapter(HeraldToml)

#: Each section's model, by its name in herald.toml (`routes`: one entry of the array;
#: `retries`: one `[retries.<actor>]` table).
SECTIONS: dict[str, type] = {
    "mail": MailSection,
    "ai": AISettings,
    "orchestrator": OrchestratorSettings,
    "breakers": BreakerSettings,
    "limits": LimitSettings,
    "retention": RetentionSettings,
    "broker": BrokerSettings,
    "api": ApiSection,
    "retries": RetryPolicy,
    "routes": Route,
}
assert set(SECTIONS) == {f.name for f in dataclasses.fields(HeraldToml)}


def options_of(model: type) -> dict[str, Any]:
    """A section's options as herald.toml spells them (`from`, not `sender`) and their
    pydantic field information."""
    fields = model.__pydantic_fields__  # type: ignore[attr-defined]
    return {info.alias or name: info for name, info in fields.items()}


def known_options() -> dict[str, set[str]]:
    """Every option of every section herald.toml may hold, by section."""
    return {name: set(options_of(model)) for name, model in SECTIONS.items()}
