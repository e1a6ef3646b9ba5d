"""`Settings`: the one immutable value every service is given, built from the environment
(and `.env`, read by herald/environment.py) plus herald.toml.

`settings_from_mapping` is the one place an environment variable's name meets a field:
pydantic-settings is not used, because it would read the process environment and `.env`
itself (behind the caller's back: herald/environment.py already decides which file, and
tests pass their own mapping), and Herald's variables are not a model's fields spelled in
capitals: HERALD_EXPORTER_PORT falls back to HERALD_METRICS_PORT, an empty
OPENAI_BASE_URL means the default endpoint, HERALD_API_TOKENS is `role:token,...`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from herald.config.api import (
    DEFAULT_API_HOST,
    DEFAULT_API_PORT,
    ApiToken,
    parse_api_tokens,
    public_links,
)
from herald.config.document import DOCUMENT
from herald.config.messages import explain
from herald.config.routes import Route
from herald.config.sections import (
    DEFAULT_MAIL_BATCH_SIZE,
    DEFAULT_MAIL_FROM,
    DEFAULT_RETRIES,
    AISettings,
    BreakerSettings,
    BrokerSettings,
    LimitSettings,
    OrchestratorSettings,
    RetentionSettings,
    RetryPolicy,
)
from herald.config.values import parse_address, section
from herald.errors import ConfigError

DEFAULT_DATABASE_URL = "postgresql://postgres@localhost:5432/postgres"
DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/%2F"
DEFAULT_SMTP_URL = "smtp://localhost:25"
#: The `openai` client's own default, passed explicitly: given None it reads OPENAI_BASE_URL
#: again, and an empty one (compose's `${OPENAI_BASE_URL:-}`) would become its base URL.
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
MAX_PORT = 65_535
SWITCH = {"on": True, "true": True, "yes": True, "1": True,
          "off": False, "false": False, "no": False, "0": False}  # fmt: skip


def _default_retries() -> dict[str, RetryPolicy]:
    return dict(DEFAULT_RETRIES)


@section
class Settings:
    # The URLs may hold credentials: never in a repr (herald/redact.py for messages).
    database_url: str = dataclasses.field(default=DEFAULT_DATABASE_URL, repr=False)
    broker_url: str = dataclasses.field(default=DEFAULT_BROKER_URL, repr=False)
    smtp_url: str = dataclasses.field(default=DEFAULT_SMTP_URL, repr=False)
    mail_from: str = DEFAULT_MAIL_FROM
    #: `[mail] batch_size`: email jobs per `send_emails` message (1: one message per job).
    mail_batch_size: int = DEFAULT_MAIL_BATCH_SIZE
    #: `[mail] templates_dir`, absolute: templates there override the packaged ones.
    mail_templates_dir: str | None = None
    metrics_port: int = 9191
    metrics_host: str = "127.0.0.1"
    #: `herald metrics serve`'s port: HERALD_EXPORTER_PORT, else HERALD_METRICS_PORT, else 9192.
    exporter_port: int = 9192
    #: Where worker processes keep their metric files (PROMETHEUS_MULTIPROC_DIR; None: a
    #: folder per port under the system's temporary directory).
    metrics_multiproc_dir: str | None = None
    #: HERALD_DB_POOL_SIZE; None: sized to the worker's threads when it boots.
    db_pool_size: int | None = None
    #: HERALD_WAKER: the LISTEN/NOTIFY waker in the workers (off: periodiq alone).
    waker: bool = True
    openai_api_key: str | None = dataclasses.field(default=None, repr=False)
    openai_base_url: str = dataclasses.field(default=DEFAULT_OPENAI_BASE_URL, repr=False)
    ai: AISettings = AISettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    breakers: BreakerSettings = BreakerSettings()
    limits: LimitSettings = LimitSettings()
    routes: tuple[Route, ...] = ()
    retries: Mapping[str, RetryPolicy] = dataclasses.field(default_factory=_default_retries)
    retention: RetentionSettings = RetentionSettings()
    broker: BrokerSettings = BrokerSettings()
    config_path: str | None = None
    #: `herald serve`: HERALD_API_HOST, HERALD_API_PORT and HERALD_API_TOKENS.
    api_host: str = DEFAULT_API_HOST
    api_port: int = DEFAULT_API_PORT
    api_tokens: tuple[ApiToken, ...] = dataclasses.field(default=(), repr=False)
    #: `[api] public_url`: where recipients reach `herald serve`; set, every email carries
    #: a one-click unsubscribe link signed with HERALD_SECRET_KEY (herald/unsubscribe.py).
    public_url: str | None = None
    secret_key: str | None = dataclasses.field(default=None, repr=False)

    @property
    def ai_active(self) -> bool:
        """The model is asked only when AI is enabled *and* a key is configured."""
        return self.ai.enabled and bool(self.openai_api_key)

    def pii_synonyms_for(self, route: str | None) -> dict[str, tuple[str, ...]]:
        """`[ai] pii_synonyms` with those of the route named ``route`` added (a route since
        removed from the configuration: `[ai]`'s alone), for `alias_pii(synonyms=...)`."""
        merged = {kind: tuple(names) for kind, names in self.ai.pii_synonyms.items()}
        found = next((r for r in self.routes if r.name == route), None)
        for kind, names in (found.pii_synonyms if found else {}).items():
            merged[kind] = merged.get(kind, ()) + tuple(names)
        return merged

    @property
    def mail_domain(self) -> str:
        return parseaddr(self.mail_from)[1].rpartition("@")[2] or "herald.invalid"


def settings_from_mapping(
    raw: Mapping[str, Any], env: Mapping[str, str], *, config_path: str | None = None
) -> Settings:
    """Build settings from parsed TOML and an environment mapping (no I/O: easy to test).

    Each environment variable Herald reads is named here, next to the field it fills."""
    try:
        toml = DOCUMENT.validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(explain(exc, raw, file=config_path or "herald.toml")) from None
    sender = (env.get("HERALD_MAIL_FROM") or "").strip()
    return Settings(
        database_url=env.get("HERALD_DATABASE_URL", DEFAULT_DATABASE_URL),
        broker_url=env.get("HERALD_BROKER_URL", DEFAULT_BROKER_URL),
        smtp_url=env.get("HERALD_SMTP_URL", DEFAULT_SMTP_URL),
        mail_from=(
            parse_address(sender, where="HERALD_MAIL_FROM")
            if sender
            else toml.mail.sender or DEFAULT_MAIL_FROM
        ),
        mail_batch_size=toml.mail.batch_size,
        mail_templates_dir=_templates_dir(toml.mail.templates_dir, config_path),
        metrics_port=_port(env, "HERALD_METRICS_PORT", 9191),
        metrics_host=env.get("HERALD_METRICS_HOST", "127.0.0.1"),
        exporter_port=_port(env, "HERALD_EXPORTER_PORT", _port(env, "HERALD_METRICS_PORT", 9192)),
        metrics_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        db_pool_size=_whole(env, "HERALD_DB_POOL_SIZE", None, lowest=1, highest=10_000),
        waker=_switch(env, "HERALD_WAKER", default=True),
        openai_api_key=env.get("OPENAI_API_KEY") or None,
        openai_base_url=(env.get("OPENAI_BASE_URL") or "").strip() or DEFAULT_OPENAI_BASE_URL,
        ai=toml.ai,
        orchestrator=toml.orchestrator,
        breakers=toml.breakers,
        limits=toml.limits,
        routes=toml.routes,
        retries=toml.retries,
        retention=toml.retention,
        broker=toml.broker,
        config_path=config_path,
        api_host=env.get("HERALD_API_HOST") or DEFAULT_API_HOST,
        api_port=_port(env, "HERALD_API_PORT", DEFAULT_API_PORT),
        api_tokens=parse_api_tokens(env.get("HERALD_API_TOKENS", "")),
        **public_links(toml.api, env),
    )


def _whole(
    env: Mapping[str, str], name: str, default: int | None, *, lowest: int, highest: int
) -> int | None:
    """An integer variable from `lowest` to `highest`; unset or blank: `default`."""
    text = (env.get(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise ConfigError(f"{name} must be an integer from {lowest} to {highest}, not {text!r:.40}")
    return int(text)


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    """A TCP port (0: any free one, for tests)."""
    port = _whole(env, name, None, lowest=0, highest=MAX_PORT)
    return default if port is None else port


def _switch(env: Mapping[str, str], name: str, *, default: bool) -> bool:
    text = (env.get(name) or "").strip().lower()
    if not text:
        return default
    if text not in SWITCH:
        raise ConfigError(f"{name} must be on or off, not {text!r:.40}")
    return SWITCH[text]


def _templates_dir(value: str | None, config_path: str | None) -> str | None:
    """`[mail] templates_dir` made absolute: a relative path is read from herald.toml's
    folder. Its templates are checked at start (herald.templating.check_route_templates)."""
    if value is None:
        return None
    base = Path(config_path).parent if config_path else Path.cwd()
    return str((base / Path(value).expanduser()).resolve())


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read `herald.toml`; a syntax error names the file and the line."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{p}: configuration file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: malformed TOML: {exc}") from None


def load_settings(
    env: Mapping[str, str] | None = None, *, require: Sequence[str] | None = None
) -> Settings:
    """Settings from the process environment over `.env` (`herald.environment`), and
    `HERALD_CONFIG`.

    `require` names the variables that must be set (ConfigError naming each, with an
    example): by default the database and the broker when the process environment is read,
    none when the caller passes its own `env` (tests). Commands that only read the database
    pass `require=("HERALD_DATABASE_URL",)`.
    """
    from herald import environment

    if env is None:
        env = environment.read_environment()
        require = environment.SERVICES if require is None else require
    environment.require(env, require or ())
    path = env.get("HERALD_CONFIG")
    if path is None and Path("herald.toml").exists():
        path = "herald.toml"
    raw = load_toml(path) if path else {}
    return settings_from_mapping(raw, env, config_path=path)
