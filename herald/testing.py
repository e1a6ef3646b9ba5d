"""Fakes of Herald's adapters, for tests and benchmarks: one place, outside production code.

`FakeMailer` stands in for `herald.email.smtp.Mailer` (it records what it was given,
parsed as a receiver would), `FakeSummariser` for `herald.enrich.ai.Summariser`. Both can
be told to fail the next calls. Pass them to `herald.bootstrap.bootstrap(...)`.
"""

from __future__ import annotations

import copy
import email.parser
import email.policy
import threading
from collections.abc import Mapping, Sequence
from email.message import EmailMessage
from typing import Any, NamedTuple

from herald.email.mailer import check_envelope
from herald.enrich.ai import Summary


def _parsed(message: bytes) -> EmailMessage:
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(message)
    assert isinstance(parsed, EmailMessage)
    return parsed


class SentMail(NamedTuple):
    message: EmailMessage  # parsed from ``raw`` as a receiver would
    from_addr: str
    to_addrs: tuple[str, ...]
    raw: bytes


class FakeMailer:
    """Records sends in ``.sent``; ``fail_next(error, times)`` makes the next sends raise."""

    def __init__(self) -> None:
        self.sent: list[SentMail] = []
        self.attempts = 0
        self.closed = False
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()

    def fail_next(self, error: BaseException, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([error] * times)

    def send(self, message: bytes, *, from_addr: str, to_addrs: Sequence[str]) -> None:
        recipients = check_envelope(from_addr, to_addrs)
        with self._lock:
            self.attempts += 1
            if self._failures:
                raise self._failures.pop(0)
            sent = SentMail(_parsed(message), from_addr, tuple(recipients), message)
            self.sent.append(sent)

    def close(self) -> None:
        self.closed = True


class FakeSummariser:
    """Records every call in ``.calls`` and returns ``text``; can be told to raise.

    ``error`` (if set) is raised on every call; ``fail_next(error, times)`` raises it for
    the next ``times`` calls only, then the fake succeeds again.
    """

    def __init__(
        self,
        text: str = "A record changed.",
        *,
        model: str = "fake",
        error: BaseException | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        self.text = text
        self.model = model
        self.error = error
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.calls: list[list[Mapping[str, Any]]] = []
        self._failures: list[BaseException] = []

    def fail_next(self, error: BaseException, times: int = 1) -> None:
        self._failures.extend([error] * times)

    def summarise(self, changes: Sequence[Mapping[str, Any]]) -> Summary:
        self.calls.append(copy.deepcopy(list(changes)))
        if self._failures:
            raise self._failures.pop(0)
        if self.error is not None:
            raise self.error
        return Summary(self.text, self.model, self.prompt_tokens, self.completion_tokens)
