"""Short summaries of changes: the ``Summariser`` interface, the real client and its fakes.

Every summariser receives changes that are *already aliased* (``herald.enrich.pii``) and
returns text that may still contain aliases; the caller puts the real values back.

``OpenAISummariser`` talks Chat Completions, so any OpenAI-compatible server works (Azure,
vLLM, Ollama, LiteLLM). It has no tools and no agency, keeps the row data out of the
system prompt, and treats what comes back as untrusted: URLs and email addresses are
removed, whitespace collapsed, length capped (OWASP LLM01/LLM05/LLM06).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import openai

from herald.enrich.prompts import SYSTEM_PROMPT, changes_message
from herald.enrich.sanitise import INVISIBLE as _INVISIBLE
from herald.enrich.sanitise import MAX_SUMMARY_CHARS, sanitise_summary
from herald.enrich.sanitise import SPACES as _SPACES
from herald.enrich.sanitise import cap as _cap
from herald.errors import HeraldError, PermanentError, TransientError
from herald.redact import redacted_url

__all__ = [
    "MAX_SUMMARY_CHARS",
    "OfflineSummariser",
    "OpenAISummariser",
    "Summariser",
    "Summary",
    "sanitise_summary",
    "summariser_from_settings",
]


@dataclass(frozen=True)
class Summary:
    """A summary and what it cost; ``offline`` when no model wrote it."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    offline: bool = False


class Summariser(Protocol):
    def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        """Summarise changes that are ALREADY aliased; raise Transient/PermanentError."""
        ...


# -- output handling ------------------------------------------------------------------------

# ``sanitise_summary`` (links, addresses, invisible characters, length) and
# ``restore_summary`` (the same again once the real values are back) live in
# herald/enrich/sanitise.py; re-exported here for the callers that know them from here.


# -- the real client ------------------------------------------------------------------------


class OpenAISummariser:
    """Summaries from an OpenAI-compatible Chat Completions server.

    ``api_key`` / ``base_url`` default to the client's own ``OPENAI_API_KEY`` /
    ``OPENAI_BASE_URL``. ``max_retries`` defaults to 0: Dramatiq's Retries middleware owns
    retrying (with backoff, counted in the job ledger and metrics); client retries on top
    would multiply attempts and hide them, and hold a worker thread for their backoff.
    ``timeout`` bounds each connect/read/write; the actor's time limit bounds the rest.
    """

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 20.0,
        max_retries: int = 0,
        max_output_tokens: int = 200,
        client: openai.OpenAI | None = None,
    ) -> None:
        if not model:
            raise PermanentError("AI model is not configured ([ai] model in herald.toml)")
        if client is None:
            try:
                client = openai.OpenAI(
                    api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
                )
            except openai.OpenAIError as exc:
                detail = _redact(str(exc), api_key)
                raise PermanentError(f"AI client not configured: {detail}") from None
        self.model = model
        self.timeout = timeout
        self.max_output_tokens = max_output_tokens
        self._client = client
        self._secret = api_key or getattr(client, "api_key", None) or None

    def __repr__(self) -> str:  # never the key, nor a password in the base URL
        base_url = redacted_url(str(self._client.base_url))
        return f"OpenAISummariser(model={self.model!r}, base_url={base_url!r})"

    def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        try:
            # The client's own post() (its documented way to any endpoint) rather than
            # chat.completions.create(): create() runs its TypedDict transform over the
            # params, about a quarter of the client's CPU per call (benchmarks/README.md);
            # this body is plain JSON already. Timeouts, retries and errors are the same.
            response = self._client.post(
                "/chat/completions", body=self.request_body(changes), cast_to=bytes
            )
        except openai.APIError as exc:
            raise self._error(exc) from None  # the cause may quote the key or the prompt
        return self.summary_of(response)

    def request_body(self, changes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The Chat Completions request for `changes` (already aliased), as plain JSON."""
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": changes_message(changes)},
            ],
            "temperature": 0,
            # max_tokens, not max_completion_tokens: every compatible server knows it.
            "max_tokens": self.max_output_tokens,
        }

    def summary_of(self, body: bytes) -> Summary:
        """The summary in a Chat Completions answer (its JSON body), sanitised;
        TransientError when there is none.

        The body is read as plain JSON, not as the client's `ChatCompletion` model: the
        model's construction was a fifth of the client's CPU per call, for three fields.
        """
        try:
            answer = json.loads(body)
            if not isinstance(answer, Mapping):
                raise TypeError("not an object")
            choices = answer.get("choices")
            choice = choices[0] if isinstance(choices, list) and choices else {}
            message = choice.get("message") or {}
            content = message.get("content")
            usage = answer.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens") or 0)
            completion_tokens = int(usage.get("completion_tokens") or 0)
            model = str(answer.get("model") or self.model)
        except (AttributeError, TypeError, ValueError):  # JSONDecodeError is a ValueError
            raise TransientError("AI returned a malformed response") from None
        text = sanitise_summary(content) if isinstance(content, str) else ""
        if not text:
            reason = choice.get("finish_reason")
            raise TransientError(f"AI returned an empty summary (finish_reason={reason})")
        return Summary(text, model[:100], prompt_tokens, completion_tokens)

    def _error(self, exc: openai.APIError) -> HeraldError:
        """Map a client error to retry-or-not, with a message safe to log and store."""
        if isinstance(exc, openai.APITimeoutError):
            return self.timeout_error()
        request_id = getattr(exc, "request_id", None)
        if isinstance(exc, openai.APIStatusError):
            return self.status_error(exc.status_code, _detail(exc), request_id)
        detail = self._safe(_detail(exc), request_id)
        if isinstance(exc, openai.APIConnectionError):
            return TransientError(f"AI unreachable: {detail}")
        return TransientError(f"AI error: {detail}")  # e.g. a malformed response body

    # The mapping by kind of failure, shared with the batch path's own HTTP client
    # (herald/enrich/ai_http.py), which has a status and a body rather than the client's
    # exceptions.

    def timeout_error(self) -> HeraldError:
        return TransientError(f"AI timed out after {self.timeout:g}s")

    def connection_error(self) -> HeraldError:
        """The openai client's own words for any failure to reach the server."""
        return TransientError("AI unreachable: Connection error.")

    def status_error(self, status: int, detail: str, request_id: str | None) -> HeraldError:
        """An HTTP error answer: transient (429, 408, 409, >= 500) or permanent."""
        detail = self._safe(detail, request_id)
        if status == 429:
            return TransientError(f"AI rate limited (HTTP 429): {detail}")
        if status >= 500:
            return TransientError(f"AI server error (HTTP {status}): {detail}")
        if status in (401, 403):
            return PermanentError(f"AI refused our credentials (HTTP {status}): {detail}")
        if status in (408, 409):
            return TransientError(f"AI error (HTTP {status}): {detail}")
        return PermanentError(f"AI rejected the request (HTTP {status}): {detail}")

    def _safe(self, detail: str, request_id: str | None) -> str:
        detail = _redact(detail, self._secret)
        if request_id:
            detail = f"{detail} (request {_redact(str(request_id), self._secret)[:64]})"
        return detail


def _detail(exc: openai.APIError) -> str:
    """The server's own message when it sent one, else the client's."""
    fallback = str(getattr(exc, "message", "") or exc.__class__.__name__)
    return error_detail(getattr(exc, "body", None), fallback)


def error_detail(body: Any, fallback: str) -> str:
    """The message in an OpenAI-style error body (``{"error": {"message": ...}}`` or the
    inner object alone), else `fallback`."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else None
        if isinstance(message, str) and message:
            return message
    return fallback


_TOKENS = re.compile(r"(?i)(?:\bsk-[\w\-*]{6,}+|\bbearer\s++\S++)")  # key-shaped, whoever's


def _redact(text: str, secret: str | None) -> str:
    """One short line with no key in it: not ours, and nothing that looks like one."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[redacted]")
    text = _TOKENS.sub("[redacted]", text[:2000])
    return _SPACES.sub(" ", text).strip()[:300]


# -- no model -------------------------------------------------------------------------------

_LABELS = ("title", "name", "subject", "label", "summary", "description", "status")
_QUIET = frozenset({"id", "created_at", "updated_at", "modified_at", "inserted_at", "version"})
_MAX_VALUE = 40
_MAX_FIELDS = 3


class OfflineSummariser:
    """Describes changes in plain words without a model.

    Used by the demo, when AI is disabled, or when no key is configured. Deterministic and
    bounded: at most three changes and three fields each are described, values are cut.
    """

    model = "offline"

    def __init__(self, *, max_chars: int = MAX_SUMMARY_CHARS, max_changes: int = 3) -> None:
        self.max_chars = max_chars
        self.max_changes = max_changes

    def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        shown = [_describe(c) for c in changes[: self.max_changes]]
        rest = changes[self.max_changes :]
        if rest:
            shown.append(_describe_rest(rest))
        text = " ".join(shown) if shown else "No changes."
        return Summary(_cap(text, self.max_chars), self.model, offline=True)


def _describe(change: Mapping[str, Any]) -> str:
    # The table without its schema: "public.members" reads as words, not as a host name
    # (the summary's sanitiser strips anything shaped like one).
    qualified = str(change.get("table") or change.get("table_name") or "a table")
    table = _plain(qualified.rpartition(".")[2] or qualified, 63)
    op = str(change.get("operation") or "").upper()
    old = _row(change.get("old_row"))
    new = _row(change.get("new_row"))
    key = _key(change.get("key", change.get("row_pk")), new or old)
    where = f"{table} ({key})" if key else table
    if op == "INSERT":
        shown = _highlights(new)
        return f"A new row was added to {where}" + (f" with {shown}." if shown else ".")
    if op == "DELETE":
        return f"A row was deleted from {where}."
    if op == "TRUNCATE":
        return f"All rows were deleted from {table}."
    if op == "UPDATE":
        if not old or not new:
            return f"A row in {where} was updated."
        changed = [k for k in new if k not in old or old[k] != new[k]]
        changed += [k for k in old if k not in new]
        if not changed:
            return f"A row in {where} was updated with no visible changes."
        changed.sort(key=lambda k: str(k) in _QUIET)  # stable: timestamps and ids last
        parts = [
            f"{_plain(k, _MAX_VALUE)}{' changed' if n == 0 else ''} from {_value(old.get(k))}"
            f" to {_value(new.get(k))}"
            for n, k in enumerate(changed[:_MAX_FIELDS])
        ]
        more = len(changed) - _MAX_FIELDS
        if more > 0:
            parts.append(f"{more} other field{'s' if more > 1 else ''} changed")
        return f"In {where}, {_join(parts)}."
    return f"A {_plain(op.lower() or 'change', 20)} happened in {where}."


def _row(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _describe_rest(rest: Sequence[Mapping[str, Any]]) -> str:
    words = {"INSERT": "added", "UPDATE": "updated", "DELETE": "deleted"}
    counts = Counter(words.get(str(c.get("operation", "")).upper(), "changed") for c in rest)
    detail = _join([f"{n} {verb}" for verb, n in counts.items()])
    return f"And {len(rest)} more change{'s' if len(rest) > 1 else ''} ({detail})."


def _key(key: Any, row: Mapping[str, Any]) -> str:
    if isinstance(key, Mapping) and key:
        return ", ".join(f"{_plain(k, 30)}={_value(v)}" for k, v in list(key.items())[:3])
    if key not in (None, "", {}):
        return f"key {_value(key)}"
    return f"id={_value(row['id'])}" if "id" in row else ""


def _highlights(row: Mapping[str, Any]) -> str:
    names = [k for k in _LABELS if row.get(k) not in (None, "")][:2]
    if not names:
        names = [k for k in row if str(k) not in _QUIET and row[k] not in (None, "")][:2]
    return _join([f"{_plain(k, _MAX_VALUE)} {_value(row[k])}" for k in names])


def _value(value: Any) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _plain(value, _MAX_VALUE)
    if isinstance(value, str):
        return f"'{_plain(value, _MAX_VALUE)}'"
    return _plain(json.dumps(value, ensure_ascii=False, default=str), _MAX_VALUE)


def _plain(value: Any, limit: int) -> str:
    """One line of at most ``limit`` characters (values come from rows: untrusted)."""
    text = _INVISIBLE.sub("", str(value)[: limit * 4])
    text = _SPACES.sub(" ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _join(parts: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def summariser_from_settings(
    *,
    enabled: bool,
    model: str,
    api_key: str | None,
    base_url: str | None,
    timeout: float,
    max_retries: int,
) -> Summariser:
    """The real summariser when AI is enabled and a key is set, else the offline one."""
    if enabled and api_key:
        return OpenAISummariser(
            model=model,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
        )
    return OfflineSummariser()
