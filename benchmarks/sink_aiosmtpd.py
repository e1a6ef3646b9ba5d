"""The benchmarks' former SMTP sink, on aiosmtpd: kept only as the baseline that
`python -m benchmarks.harness_cost` measures `benchmarks.sink` against.

It parses nothing but the `X-Herald-Change-Id` header, yet aiosmtpd's per-command
machinery costs more CPU per message than the hand-written sink (see `benchmarks.sink`).
"""

from __future__ import annotations

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from benchmarks.sink import CHANGE_ID, Accepted
from tests.services import free_port


class Sink(Accepted):
    """Accepts every message; the same API as `benchmarks.sink.Sink`."""

    def __init__(self) -> None:
        super().__init__()
        self.host = "127.0.0.1"
        self.port = free_port()
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

    async def handle_EHLO(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list:
        """Offer PIPELINING (RFC 2920) as production MTAs do; aiosmtpd serves it already."""
        session.host_name = hostname
        responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        data = envelope.original_content or envelope.content or b""
        if isinstance(data, str):
            data = data.encode()
        found = CHANGE_ID.search(data)
        self.record(int(found[1]) if found else -1)
        return "250 OK"
