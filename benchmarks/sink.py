"""A fast SMTP sink (aiosmtpd) for the benchmarks: counts what it accepts and when.

Unlike the test suite's recording server it parses nothing but the
`X-Herald-Change-Id` header, so it stays far cheaper per message than the
pipeline it measures.
"""

from __future__ import annotations

import re
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.services import free_port

_CHANGE_ID = re.compile(rb"^X-Herald-Change-Id:\s*(\d+)", re.MULTILINE | re.IGNORECASE)


class Sink:
    """Accepts every message; ``accepted`` holds (time.time(), first change id) per message."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self._cond = threading.Condition()
        self.accepted: list[tuple[float, int]] = []
        self._controller = Controller(
            self, hostname=self.host, port=self.port, server_hostname="localhost",
            ready_timeout=10.0,
        )  # fmt: skip

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> Sink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    @property
    def count(self) -> int:
        with self._cond:
            return len(self.accepted)

    def reset(self) -> None:
        with self._cond:
            self.accepted = []

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.accepted) >= count, timeout)

    async def handle_EHLO(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list:
        """Offer PIPELINING (RFC 2920) as production MTAs do; aiosmtpd serves it already."""
        session.host_name = hostname
        responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        now = time.time()
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode()
        found = _CHANGE_ID.search(data)
        with self._cond:
            self.accepted.append((now, int(found[1]) if found else -1))
            self._cond.notify_all()
        return "250 OK"
