"""Herald's settings: read once from the environment (and `.env`) plus `herald.toml`.

Settings are an immutable value passed explicitly to the services that need
them; nothing reads the environment behind the caller's back. Bad
configuration is refused at start with an error that names the problem (the
route, the recipient, the line of the TOML file).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import getaddresses, parseaddr
from pathlib import Path
from typing import Any

from herald.changes import MAX_CHANGE_BYTES, MAX_CHANGE_DEPTH
from herald.digests.schedule import ScheduleError, parse_schedule, zone
from herald.errors import ConfigError
from herald.headers import FORBIDDEN_IN_HEADERS

PRIORITIES = ("urgent", "normal", "low")
#: A route's `template`: the triplet `<name>.subject.txt`, `<name>.txt`, `<name>.html`.
DEFAULT_TEMPLATE = "notification"
TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MODES = ("immediate", "digest")
#: A digest route's defaults: its calendar, and the notifications one digest lists.
DEFAULT_DIGEST = "daily 09:00"
DEFAULT_DIGEST_MAX_ITEMS = 20
MAX_DIGEST_ITEMS = 200
OPERATIONS = ("INSERT", "UPDATE", "DELETE")
ON_AI_FAILURE = ("send", "hold")

DEFAULT_DATABASE_URL = "postgresql://postgres@localhost:5432/postgres"
DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/%2F"
DEFAULT_SMTP_URL = "smtp://localhost:25"
#: The `openai` client's own default, passed explicitly: given None it reads OPENAI_BASE_URL
#: again, and an empty one (compose's `${OPENAI_BASE_URL:-}`) would become its base URL.
DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MAIL_FROM = "Herald <herald@localhost>"
#: Email jobs per `send_emails` message: one RabbitMQ delivery and one ledger statement
#: serve them all (actors/email.py). Small, so a batch stays short next to its time limit.
DEFAULT_MAIL_BATCH_SIZE = 20
MAX_MAIL_BATCH_SIZE = 200
#: Enrich jobs per `enrich_batch` message, and AI calls in flight per worker process
#: (herald/enrich/batch.py): a worker thread waits for its batch, not for each call.
DEFAULT_AI_BATCH_SIZE = 20
MAX_AI_BATCH_SIZE = 200
DEFAULT_AI_MAX_CONCURRENCY = 64
MAX_AI_MAX_CONCURRENCY = 1000
#: Highest `[limits] max_change_depth`: Python's JSON decoder raises RecursionError near 1,000.
MAX_CHANGE_DEPTH_CEILING = 500


def parse_address(value: str, *, where: str) -> str:
    """Validate one email address (optionally with a display name); return it normalised."""
    if not isinstance(value, str) or any(c in value for c in FORBIDDEN_IN_HEADERS):
        raise ConfigError(f"{where}: invalid email address {value!r}")
    name, addr = parseaddr(value)
    if "@" not in addr or len(getaddresses([value])) != 1:  # one address, never a list
        raise ConfigError(f"{where}: invalid email address {value!r}")
    local, _, domain = addr.rpartition("@")
    try:
        Address(display_name=name, username=local, domain=domain)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: invalid email address {value!r} ({exc})") from None
    if not local or not domain or "." not in domain and domain != "localhost" or " " in addr:
        raise ConfigError(f"{where}: invalid email address {value!r}")
    return value.strip()


@dataclass(frozen=True)
class Route:
    """One `[[routes]]` entry; the first route that matches a change wins."""

    name: str
    table: str = "*"
    operations: tuple[str, ...] = OPERATIONS
    recipients: tuple[str, ...] = ()
    ai: bool = False
    priority: str = "normal"
    mode: str = "immediate"
    debounce_seconds: int = 0
    debounce_max_seconds: int | None = None
    on_ai_failure: str = "send"
    #: More column names to alias on this route, by alias type (`{phone = ["handy"]}`),
    #: on top of `[ai] pii_synonyms`; see herald/enrich/pii_fields.py.
    pii_synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    #: A sandboxed Jinja2 subject (herald/email/subject.py); None: the default in words.
    subject: str | None = None
    #: The column that names a row in subjects and bodies; None: title, name, ..., id.
    label_field: str | None = None
    #: The template triplet: `<template>.subject.txt`, `.txt` and `.html`.
    template: str = DEFAULT_TEMPLATE
    #: Columns of the changed row holding more recipients (the old row's for a DELETE).
    recipient_fields: tuple[str, ...] = ()
    #: mode = "digest": the default calendar (`daily 09:00`, `weekly mon 09:00`,
    #: `monthly 31 09:00`; herald/digests/schedule.py), its timezone (a recipient's own
    #: timezone wins) and how many notifications one digest lists.
    digest: str | None = None
    digest_timezone: str = "UTC"
    digest_max_items: int = DEFAULT_DIGEST_MAX_ITEMS

    @property
    def debounce_window_max(self) -> int:
        """Constant churn still sends: at the latest this long after a row's first change."""
        if self.debounce_max_seconds is not None:
            return self.debounce_max_seconds
        return 10 * self.debounce_seconds

    def matches(self, table_name: str, operation: str) -> bool:
        table_ok = self.table in ("*", table_name) or table_name.endswith("." + self.table)
        return table_ok and operation in self.operations

    @classmethod
    def from_toml(cls, index: int, raw: Mapping[str, Any]) -> Route:
        name = str(raw.get("name") or f"routes[{index}]")
        where = f"route {name!r}"
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {', '.join(sorted(unknown))}")
        operations = tuple(str(op).upper() for op in raw.get("operations", OPERATIONS))
        for op in operations:
            if op not in OPERATIONS:
                raise ConfigError(
                    f"{where}: unknown operation {op!r} (use {', '.join(OPERATIONS)})"
                )
        recipients = raw.get("recipients", [])
        if not isinstance(recipients, list):
            raise ConfigError(f"{where}: recipients must be a list of email addresses")
        parsed = tuple(parse_address(r, where=where) for r in recipients)
        priority = raw.get("priority", "normal")
        if priority not in PRIORITIES:
            raise ConfigError(f"{where}: priority must be one of {', '.join(PRIORITIES)}")
        mode = raw.get("mode", "immediate")
        if mode not in MODES:
            raise ConfigError(f"{where}: mode must be one of {', '.join(MODES)}")
        on_ai_failure = raw.get("on_ai_failure", "send")
        if on_ai_failure not in ON_AI_FAILURE:
            raise ConfigError(f"{where}: on_ai_failure must be one of {', '.join(ON_AI_FAILURE)}")
        debounce = raw.get("debounce_seconds", 0)
        if not isinstance(debounce, int) or debounce < 0:
            raise ConfigError(f"{where}: debounce_seconds must be a non-negative integer")
        debounce_max = raw.get("debounce_max_seconds")
        if debounce_max is not None and (
            not isinstance(debounce_max, int) or debounce_max < debounce
        ):
            raise ConfigError(
                f"{where}: debounce_max_seconds must be an integer >= debounce_seconds"
            )
        table = str(raw.get("table", "*") or "*")
        return cls(
            name=name,
            table=table,
            operations=operations,
            recipients=parsed,
            ai=bool(raw.get("ai", False)),
            priority=priority,
            mode=mode,
            debounce_seconds=debounce,
            debounce_max_seconds=debounce_max,
            on_ai_failure=on_ai_failure,
            pii_synonyms=_pii_synonyms(raw.get("pii_synonyms", {}), f"{where}: pii_synonyms"),
            recipient_fields=_column_names(
                raw.get("recipient_fields", []), f"{where}: recipient_fields"
            ),
            **_route_look(where, raw),
            **_route_digest(where, raw, mode, debounce),
        )


def _route_look(where: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """A route's subject, label_field and template as values; whether the templates
    compile is the email stage's check at start (herald.templating.check_route_templates)."""
    subject = raw.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject.strip()):
        raise ConfigError(f"{where}: subject must be a non-empty Jinja2 template string")
    label_field = raw.get("label_field")
    if label_field is not None and (not isinstance(label_field, str) or not label_field):
        raise ConfigError(f"{where}: label_field must be a column name, not {label_field!r}")
    template = raw.get("template", DEFAULT_TEMPLATE)
    if not isinstance(template, str) or not TEMPLATE_NAME.fullmatch(template):
        raise ConfigError(
            f"{where}: template {template!r} is not a template name (a-z, 0-9, _ and -; "
            "its files are <name>.subject.txt, <name>.txt and <name>.html)"
        )
    return {"subject": subject, "label_field": label_field, "template": template}


def _route_digest(where: str, raw: Mapping[str, Any], mode: str, debounce: int) -> dict[str, Any]:
    """A digest route's calendar, timezone and item cap; refused on an immediate route."""
    options = [k for k in ("digest", "digest_timezone", "digest_max_items") if k in raw]
    if mode != "digest":
        if options:
            raise ConfigError(f'{where}: {", ".join(options)} need mode = "digest"')
        return {}
    if debounce:
        raise ConfigError(
            f'{where}: mode = "digest" collects changes already; drop debounce_seconds'
        )
    try:
        spec = str(parse_schedule(raw.get("digest", DEFAULT_DIGEST)))
        timezone = raw.get("digest_timezone", "UTC")
        zone(timezone)
    except ScheduleError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    cap = raw.get("digest_max_items", DEFAULT_DIGEST_MAX_ITEMS)
    if type(cap) is not int or not 1 <= cap <= MAX_DIGEST_ITEMS:
        raise ConfigError(
            f"{where}: digest_max_items must be an integer from 1 to {MAX_DIGEST_ITEMS}"
        )
    return {"digest": spec, "digest_timezone": timezone, "digest_max_items": cap}


def _column_names(value: Any, where: str) -> tuple[str, ...]:
    """A list of column names, each a non-empty string of at most 128 characters."""
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and v.strip() and len(v) <= 128 for v in value
    ):
        raise ConfigError(
            f"{where} must be a list of column names (non-empty strings), not {value!r:.80}"
        )
    return tuple(v.strip() for v in value)


def _pii_synonyms(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    """`{alias type = [column names]}`: more columns whose values are aliased."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            f'{where} must be a table of lists, e.g. {{ phone = ["handy", "telefon"] }}'
        )
    return {
        _column_names([kind], where)[0]: _column_names(names, f"{where}.{kind}")
        for kind, names in value.items()
    }


@dataclass(frozen=True)
class AISettings:
    enabled: bool = True
    model: str = "gpt-4o-mini"
    #: Columns whose values are aliased, in any form (firstName, FIRST-NAME), with the
    #: shipped synonyms of each (surname for last_name): herald/enrich/pii_fields.py.
    pii_fields: tuple[str, ...] = ("email", "phone", "first_name", "last_name")
    #: More column names to alias, by alias type: `{ phone = ["handy"] }`.
    pii_synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    timeout_seconds: float = 20.0
    max_retries: int = 0  # the client's own retries; Dramatiq's Retries owns retrying
    #: The longest an email of an on_ai_failure = "send" route waits for its summary, from
    #: the moment its notification is due, whatever the AI does (herald/enrich/deadline.py).
    max_delay_seconds: float = 60.0
    #: Enrich jobs per `enrich_batch` message, their AI calls made together (1: one
    #: message per job; herald/enrich/batch.py).
    batch_size: int = DEFAULT_AI_BATCH_SIZE
    #: AI calls in flight at once in one worker process, whatever its threads.
    max_concurrency: int = DEFAULT_AI_MAX_CONCURRENCY

    @property
    def call_seconds(self) -> float:
        """The longest one summary request may take: the client's timeout, per try."""
        return self.timeout_seconds * (self.max_retries + 1)


def _ai(raw: Mapping[str, Any]) -> AISettings:
    ai = AISettings(
        enabled=bool(raw.get("enabled", True)),
        model=str(raw.get("model", AISettings.model)),
        pii_fields=_column_names(raw.get("pii_fields", AISettings.pii_fields), "[ai] pii_fields"),
        pii_synonyms=_pii_synonyms(raw.get("pii_synonyms", {}), "[ai] pii_synonyms"),
        timeout_seconds=float(
            _number(raw.get("timeout_seconds", AISettings.timeout_seconds),
                    "[ai] timeout_seconds", strict=True)
        ),
        max_retries=int(_number(raw.get("max_retries", 0), "[ai] max_retries")),
        max_delay_seconds=float(
            _number(raw.get("max_delay_seconds", AISettings.max_delay_seconds),
                    "[ai] max_delay_seconds", strict=True)
        ),
        batch_size=_count(raw.get("batch_size", DEFAULT_AI_BATCH_SIZE), "[ai] batch_size",
                          MAX_AI_BATCH_SIZE),
        max_concurrency=_count(raw.get("max_concurrency", DEFAULT_AI_MAX_CONCURRENCY),
                               "[ai] max_concurrency", MAX_AI_MAX_CONCURRENCY),
    )  # fmt: skip
    if ai.call_seconds >= ai.max_delay_seconds:
        raise ConfigError(
            f"[ai] timeout_seconds x (max_retries + 1) = {ai.call_seconds:g}s must be under "
            f"max_delay_seconds ({ai.max_delay_seconds:g}s): one request to the AI could "
            "otherwise hold a send route's email past it"
        )
    return ai


def _count(value: Any, where: str, highest: int) -> int:
    """A whole number from 1 to `highest`."""
    if type(value) is not int or not 1 <= value <= highest:
        raise ConfigError(f"{where} must be an integer from 1 to {highest}, not {value!r:.40}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """Dramatiq Retries options for one actor. Backoffs stay far below RabbitMQ's
    30-minute consumer_timeout: delayed messages wait unacked in worker memory."""

    max_retries: int
    min_backoff_ms: int
    max_backoff_ms: int
    time_limit_ms: int


#: Defaults per actor; `[retries.<actor>]` in herald.toml overrides any field.
DEFAULT_RETRIES = {
    "orchestrate": RetryPolicy(
        max_retries=0, min_backoff_ms=1_000, max_backoff_ms=1_000, time_limit_ms=150_000
    ),
    "enrich": RetryPolicy(
        max_retries=5, min_backoff_ms=5_000, max_backoff_ms=120_000, time_limit_ms=60_000
    ),
    "send_email": RetryPolicy(
        max_retries=8, min_backoff_ms=5_000, max_backoff_ms=300_000, time_limit_ms=60_000
    ),
    "sweep": RetryPolicy(
        max_retries=0, min_backoff_ms=1_000, max_backoff_ms=1_000, time_limit_ms=60_000
    ),
    # Hourly; a retry is worth it (the next tick is an hour away), and the periodic-retry
    # middleware keeps periodiq's 30-second skip from dropping it.
    "purge": RetryPolicy(
        max_retries=3, min_backoff_ms=10_000, max_backoff_ms=60_000, time_limit_ms=150_000
    ),
    # Every minute, as the orchestrator: the next tick is the retry.
    "digest_tick": RetryPolicy(
        max_retries=0, min_backoff_ms=1_000, max_backoff_ms=1_000, time_limit_ms=60_000
    ),
    # One digest email: an AI overview (when the route asks) and SMTP, as send_email.
    "send_digest": RetryPolicy(
        max_retries=8, min_backoff_ms=5_000, max_backoff_ms=300_000, time_limit_ms=90_000
    ),
}
MAX_BACKOFF_CEILING_MS = 15 * 60 * 1000


def _retries(raw: Mapping[str, Any]) -> dict[str, RetryPolicy]:
    policies = dict(DEFAULT_RETRIES)
    for actor, opts in raw.items():
        if actor not in policies:
            raise ConfigError(f"[retries.{actor}]: unknown actor (known: {', '.join(policies)})")
        if not isinstance(opts, Mapping):
            raise ConfigError(f"[retries.{actor}] must be a table")
        unknown = set(opts) - set(RetryPolicy.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"[retries.{actor}]: unknown option(s) {', '.join(sorted(unknown))}")
        merged = {**policies[actor].__dict__, **opts}
        if not all(isinstance(v, int) and v >= 0 for v in merged.values()):
            raise ConfigError(f"[retries.{actor}]: values must be non-negative integers")
        if merged["max_backoff_ms"] > MAX_BACKOFF_CEILING_MS:
            raise ConfigError(
                f"[retries.{actor}]: max_backoff_ms above {MAX_BACKOFF_CEILING_MS} would hold "
                "messages unacked long enough for RabbitMQ's consumer_timeout to requeue them"
            )
        policies[actor] = RetryPolicy(**merged)
    return policies


@dataclass(frozen=True)
class RetentionSettings:
    """`[retention]`: the periodic purge (hourly) removes finished rows older than `days`
    (0 turns it off); failed jobs are never purged by it, only by `herald jobs purge`."""

    days: int = 30
    batch_size: int = 5_000
    max_runtime_seconds: float = 120.0


def _retention(raw: Mapping[str, Any]) -> RetentionSettings:
    unknown = set(raw) - set(RetentionSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"[retention]: unknown option(s) {', '.join(sorted(unknown))}")
    merged = {**RetentionSettings().__dict__, **raw}
    days, batch, runtime = merged["days"], merged["batch_size"], merged["max_runtime_seconds"]
    if not isinstance(days, int) or isinstance(days, bool) or days < 0:
        raise ConfigError("[retention] days must be a non-negative integer (0: no periodic purge)")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError("[retention] batch_size must be a positive integer")
    if not isinstance(runtime, int | float) or isinstance(runtime, bool) or runtime <= 0:
        raise ConfigError("[retention] max_runtime_seconds must be a positive number")
    return RetentionSettings(**merged)


@dataclass(frozen=True)
class OrchestratorSettings:
    #: Changes claimed per batch, in one transaction: a batch's fixed costs (the lock, each
    #: statement's round trip, a round of publisher confirms) are paid once for all of
    #: them, and its jobs leave in full email and enrich batches. The orchestrator reads no
    #: row values, so a batch's memory does not grow with them (docs/performance.md).
    batch_size: int = 1000
    max_runtime_seconds: float = 90.0
    republish_after_seconds: float = 30.0
    #: Changes one debounced notification lists at most; past it a new notification starts
    #: (no change is dropped). 100: what one email lists (herald/email/render.py).
    max_changes_per_notification: int = 100


@dataclass(frozen=True)
class BreakerSettings:
    """`[breakers]`, for both the smtp and the ai breaker (herald/breaker.py).

    `failure_threshold` transient failures in a row open a breaker (0: no breakers); it
    stays open `reset_seconds`, then lets one probe through per period. With the ai
    breaker open, the emails of routes with on_ai_failure = "send" go out "summary
    unavailable" at once; those of "hold" routes wait. `max_deferral_seconds` is no longer
    read (accepted, so older files still load): `[ai] max_delay_seconds` bounds the wait.
    """

    failure_threshold: int = 5
    reset_seconds: float = 30.0
    max_deferral_seconds: float = 300.0


@dataclass(frozen=True)
class LimitSettings:
    """`[limits]`: global rate limits across every worker (herald/ratelimit.py), unset
    means unlimited; and how large (bytes of JSON text) and how deeply nested a change may
    be: one over either is failed unloaded (orchestrator/claim.py)."""

    ai_requests_per_minute: float | None = None
    emails_per_second: float | None = None
    max_change_bytes: int = MAX_CHANGE_BYTES
    max_change_depth: int = MAX_CHANGE_DEPTH


def _number(value: Any, where: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ConfigError(f"{where} must be a number")
    if value < minimum or (strict and value == minimum):
        raise ConfigError(f"{where} must be {'above' if strict else 'at least'} {minimum:g}")
    return value


def _breakers(raw: Mapping[str, Any]) -> BreakerSettings:
    unknown = set(raw) - set(BreakerSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"[breakers]: unknown option(s) {', '.join(sorted(unknown))}")
    merged = {**BreakerSettings().__dict__, **raw}
    threshold = merged["failure_threshold"]
    if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 0:
        raise ConfigError("[breakers] failure_threshold must be a non-negative integer")
    reset = _number(merged["reset_seconds"], "[breakers] reset_seconds", strict=True)
    if reset * 1000 > MAX_BACKOFF_CEILING_MS:
        raise ConfigError(
            f"[breakers] reset_seconds above {MAX_BACKOFF_CEILING_MS // 1000} would hold "
            "deferred messages unacked long enough for RabbitMQ's consumer_timeout"
        )
    return BreakerSettings(
        failure_threshold=threshold,
        reset_seconds=float(reset),
        max_deferral_seconds=float(
            _number(merged["max_deferral_seconds"], "[breakers] max_deferral_seconds")
        ),
    )


def _limits(raw: Mapping[str, Any]) -> LimitSettings:
    unknown = set(raw) - set(LimitSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"[limits]: unknown option(s) {', '.join(sorted(unknown))}")
    rates = {
        k: float(_number(raw[k], f"[limits] {k}", strict=True))
        for k in ("ai_requests_per_minute", "emails_per_second")
        if k in raw
    }
    max_bytes = raw.get("max_change_bytes", MAX_CHANGE_BYTES)
    if type(max_bytes) is not int or max_bytes < 1:
        raise ConfigError("[limits] max_change_bytes must be a positive integer")
    max_depth = raw.get("max_change_depth", MAX_CHANGE_DEPTH)
    if type(max_depth) is not int or not 1 <= max_depth <= MAX_CHANGE_DEPTH_CEILING:
        raise ConfigError(
            f"[limits] max_change_depth must be an integer from 1 to {MAX_CHANGE_DEPTH_CEILING} "
            "(Python's JSON decoder recurses once per level)"
        )
    return LimitSettings(**rates, max_change_bytes=max_bytes, max_change_depth=max_depth)


#: `[broker] queue_type`: classic queues (one node, message priorities) or quorum queues
#: (replicated on a cluster; each priority a queue of its own: actors/quorum.py).
QUEUE_TYPES = ("classic", "quorum")
#: Deliveries of one message before a quorum queue dead-letters it (RabbitMQ 4's default).
DEFAULT_DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class BrokerSettings:
    """`[broker]`: the queue type Herald declares, the quorum queues' delivery limit, and
    whether each process shuffles the nodes of HERALD_BROKER_URL (`a;b;c`) so that
    workers spread over a cluster (false: every process tries them in the order given)."""

    queue_type: str = "classic"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    shuffle_nodes: bool = True


def _broker(raw: Mapping[str, Any]) -> BrokerSettings:
    unknown = set(raw) - set(BrokerSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"[broker]: unknown option(s) {', '.join(sorted(unknown))}")
    queue_type = raw.get("queue_type", "classic")
    if queue_type not in QUEUE_TYPES:
        raise ConfigError(
            f"[broker] queue_type must be one of {', '.join(QUEUE_TYPES)}, not {queue_type!r:.40}"
        )
    limit = raw.get("delivery_limit", DEFAULT_DELIVERY_LIMIT)
    if type(limit) is not int or limit < 1:
        raise ConfigError("[broker] delivery_limit must be a positive integer")
    shuffle = raw.get("shuffle_nodes", True)
    if not isinstance(shuffle, bool):
        raise ConfigError("[broker] shuffle_nodes must be true or false")
    return BrokerSettings(queue_type=queue_type, delivery_limit=limit, shuffle_nodes=shuffle)


#: `herald serve`'s defaults: loopback only unless configured.
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_API_PORT = 8080
#: Roles of HERALD_API_TOKENS: a viewer reads; an operator also retries, cancels and sends.
API_ROLES = ("viewer", "operator")
MIN_API_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ApiToken:
    """One HERALD_API_TOKENS entry; the token never appears in a repr or an error."""

    role: str
    token: str = field(repr=False)


def parse_api_tokens(text: str) -> tuple[ApiToken, ...]:
    """`viewer:TOKEN,operator:TOKEN,...` (several per role allowed); errors name the entry
    by its position, never by its text (it may hold a token)."""
    tokens: list[ApiToken] = []
    entries = [e.strip() for e in text.split(",")]
    for index, entry in enumerate((e for e in entries if e), start=1):
        role, sep, token = (part.strip() for part in entry.partition(":"))
        if not sep or role not in API_ROLES:
            raise ConfigError(
                f"HERALD_API_TOKENS: entry {index} must be ROLE:TOKEN with ROLE one of "
                f"{', '.join(API_ROLES)}"
            )
        if len(token) < MIN_API_TOKEN_CHARS:
            raise ConfigError(
                f"HERALD_API_TOKENS: entry {index} ({role}): the token is shorter than "
                f"{MIN_API_TOKEN_CHARS} characters"
            )
        if any(t.token == token for t in tokens):
            raise ConfigError(f"HERALD_API_TOKENS: entry {index} repeats an earlier token")
        tokens.append(ApiToken(role, token))
    return tuple(tokens)


#: HERALD_SECRET_KEY signs the unsubscribe links: at least this long.
MIN_SECRET_KEY_CHARS = 32


def _public_links(api: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`[api] public_url` (http(s), no query) and HERALD_SECRET_KEY, needed together for the
    unsubscribe links; the key is never quoted in an error."""
    unknown = set(api) - {"public_url"}
    if unknown:
        raise ConfigError(f"[api]: unknown option(s) {', '.join(sorted(unknown))}")
    url = api.get("public_url")
    key = env.get("HERALD_SECRET_KEY") or None
    if key is not None and len(key) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(f"HERALD_SECRET_KEY is shorter than {MIN_SECRET_KEY_CHARS} characters")
    if url is None:
        return {"secret_key": key}
    if (
        not isinstance(url, str)
        or not url.startswith(("https://", "http://"))
        or any(c in url for c in '?#"\\<> ')
        or len(url) > 200
        or any(ord(c) < 33 or ord(c) > 126 for c in url)
    ):
        raise ConfigError(
            f"[api] public_url must be an http(s) URL without a query, not {url!r:.80}"
        )
    if key is None:
        raise ConfigError(
            "[api] public_url is set but HERALD_SECRET_KEY is not: the one-click unsubscribe "
            "links in every email are signed with it"
        )
    return {"public_url": url.rstrip("/"), "secret_key": key}


@dataclass(frozen=True)
class Settings:
    # The URLs may hold credentials: never in a repr (herald/redact.py for messages).
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)
    broker_url: str = field(default=DEFAULT_BROKER_URL, repr=False)
    smtp_url: str = field(default=DEFAULT_SMTP_URL, repr=False)
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
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str = field(default=DEFAULT_OPENAI_BASE_URL, repr=False)
    ai: AISettings = AISettings()
    orchestrator: OrchestratorSettings = OrchestratorSettings()
    breakers: BreakerSettings = BreakerSettings()
    limits: LimitSettings = LimitSettings()
    routes: tuple[Route, ...] = ()
    retries: Mapping[str, RetryPolicy] = field(default_factory=lambda: dict(DEFAULT_RETRIES))
    retention: RetentionSettings = RetentionSettings()
    broker: BrokerSettings = BrokerSettings()
    config_path: str | None = None
    #: `herald serve`: HERALD_API_HOST, HERALD_API_PORT and HERALD_API_TOKENS.
    api_host: str = DEFAULT_API_HOST
    api_port: int = DEFAULT_API_PORT
    api_tokens: tuple[ApiToken, ...] = field(default=(), repr=False)
    #: `[api] public_url`: where recipients reach `herald serve`; set, every email carries
    #: a one-click unsubscribe link signed with HERALD_SECRET_KEY (herald/unsubscribe.py).
    public_url: str | None = None
    secret_key: str | None = field(default=None, repr=False)

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


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _templates_dir(value: Any, config_path: str | None) -> str | None:
    """`[mail] templates_dir` made absolute: a relative path is read from herald.toml's
    folder. Its templates are checked at start (herald.templating.check_route_templates)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[mail] templates_dir must be a folder path, not {value!r}")
    base = Path(config_path).parent if config_path else Path.cwd()
    return str((base / Path(value).expanduser()).resolve())


def settings_from_mapping(
    raw: Mapping[str, Any], env: Mapping[str, str], *, config_path: str | None = None
) -> Settings:
    """Build settings from parsed TOML and an environment mapping (no I/O: easy to test)."""
    mail = _section(raw, "mail")
    ai_raw = _section(raw, "ai")
    orch = _section(raw, "orchestrator")
    routes_raw = raw.get("routes", [])
    if not isinstance(routes_raw, list):
        raise ConfigError("routes must be an array of tables ([[routes]])")
    routes = tuple(Route.from_toml(i, r) for i, r in enumerate(routes_raw))
    names = [r.name for r in routes]
    if len(set(names)) != len(names):
        raise ConfigError("route names must be unique")

    mail_from = env.get("HERALD_MAIL_FROM") or mail.get("from") or DEFAULT_MAIL_FROM
    parse_address(mail_from, where="HERALD_MAIL_FROM / [mail] from")

    ai = _ai(ai_raw)
    try:
        orchestrator = OrchestratorSettings(
            batch_size=int(orch.get("batch_size", OrchestratorSettings.batch_size)),
            max_runtime_seconds=float(
                orch.get("max_runtime_seconds", OrchestratorSettings.max_runtime_seconds)
            ),
            republish_after_seconds=float(
                orch.get("republish_after_seconds", OrchestratorSettings.republish_after_seconds)
            ),
            max_changes_per_notification=int(
                orch.get(
                    "max_changes_per_notification",
                    OrchestratorSettings.max_changes_per_notification,
                )
            ),
        )
        metrics_port = int(env.get("HERALD_METRICS_PORT", "9191"))
        api_port = int(env.get("HERALD_API_PORT") or DEFAULT_API_PORT)
        exporter_port = int(
            env.get("HERALD_EXPORTER_PORT") or env.get("HERALD_METRICS_PORT") or "9192"
        )
        pool_size = env.get("HERALD_DB_POOL_SIZE")
        db_pool_size = int(pool_size) if pool_size else None
    except ValueError as exc:
        raise ConfigError(f"invalid number in configuration: {exc}") from None
    if orchestrator.batch_size < 1:
        raise ConfigError("[orchestrator] batch_size must be at least 1")
    if orchestrator.max_changes_per_notification < 1:
        raise ConfigError("[orchestrator] max_changes_per_notification must be at least 1")
    mail_batch_size = mail.get("batch_size", DEFAULT_MAIL_BATCH_SIZE)
    if type(mail_batch_size) is not int or not 1 <= mail_batch_size <= MAX_MAIL_BATCH_SIZE:
        raise ConfigError(
            f"[mail] batch_size must be an integer from 1 to {MAX_MAIL_BATCH_SIZE}, "
            f"not {mail_batch_size!r}"
        )
    templates_dir = _templates_dir(mail.get("templates_dir"), config_path)

    return Settings(
        database_url=env.get("HERALD_DATABASE_URL", DEFAULT_DATABASE_URL),
        broker_url=env.get("HERALD_BROKER_URL", DEFAULT_BROKER_URL),
        smtp_url=env.get("HERALD_SMTP_URL", DEFAULT_SMTP_URL),
        mail_from=mail_from,
        mail_batch_size=mail_batch_size,
        mail_templates_dir=templates_dir,
        metrics_port=metrics_port,
        metrics_host=env.get("HERALD_METRICS_HOST", "127.0.0.1"),
        exporter_port=exporter_port,
        metrics_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        db_pool_size=db_pool_size,
        waker=env.get("HERALD_WAKER", "on").strip().lower() not in ("0", "off", "false", "no"),
        openai_api_key=env.get("OPENAI_API_KEY") or None,
        openai_base_url=(env.get("OPENAI_BASE_URL") or "").strip() or DEFAULT_OPENAI_BASE_URL,
        ai=ai,
        orchestrator=orchestrator,
        breakers=_breakers(_section(raw, "breakers")),
        limits=_limits(_section(raw, "limits")),
        routes=routes,
        retries=_retries(_section(raw, "retries")),
        retention=_retention(_section(raw, "retention")),
        broker=_broker(_section(raw, "broker")),
        config_path=config_path,
        api_host=env.get("HERALD_API_HOST") or DEFAULT_API_HOST,
        api_port=api_port,
        api_tokens=parse_api_tokens(env.get("HERALD_API_TOKENS", "")),
        **_public_links(_section(raw, "api"), env),
    )


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
