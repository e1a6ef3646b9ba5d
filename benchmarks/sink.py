"""A lean SMTP sink for the benchmarks: counts what it accepts, and when.

Hand-written on asyncio rather than aiosmtpd (the rule is a well-kept library unless
there is a reason): the sink shares the machine's two cores with the pipeline it
measures, and aiosmtpd's per-command machinery (a coroutine and a parsed, logged,
hooked command each, the message copied into an envelope) cost 0.29 ms of CPU per
~3 kB message against 0.06 ms here (`python -m benchmarks.harness_cost`, medians of 3),
beside the workers' ~0.85 ms per change. Production MTAs run on other machines.

It speaks what smtplib and Herald's mailer (herald/email/smtp.py) use: EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT; anything else is answered 502. It offers PIPELINING (RFC
2920), as production MTAs do: the commands in one packet are answered in one write.
Nothing is stored; of each message it reads only the `X-Herald-Change-Id` header, in the
header block (dot-stuffing does not matter there, nor to counting).
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

CHANGE_ID = re.compile(rb"^X-Herald-Change-Id:[ \t]*(\d+)", re.MULTILINE | re.IGNORECASE)
_END = b"\r\n.\r\n"
_MAX_LINE = 4096  # a command line longer than this is refused and dropped

_GREETING = b"220 localhost ESMTP herald benchmark sink\r\n"
_EHLO = b"250-localhost\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 33554432\r\n"
_OK = b"250 OK\r\n"
_GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
_BYE = b"221 Bye\r\n"
_NO_SENDER = b"503 Error: need MAIL command\r\n"
_NO_RECIPIENT = b"503 Error: need RCPT command\r\n"
_UNKNOWN = b"502 Command not implemented\r\n"
_TOO_LONG = b"500 Line too long\r\n"


class Accepted:
    """What a sink accepted: ``accepted`` holds (time.time(), first change id) per message
    (-1 when the header is missing); the benchmark waits on it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.accepted: list[tuple[float, int]] = []

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

    def record(self, change_id: int) -> None:
        now = time.time()
        with self._cond:
            self.accepted.append((now, change_id))
            self._cond.notify_all()


class Sink(Accepted):
    """Accepts every message on 127.0.0.1 (a free port) between start() and stop()."""

    def __init__(self) -> None:
        super().__init__()
        self.host = "127.0.0.1"
        # Bound now, so the port is known before start() and no other process can take it.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((self.host, 0))
        self.port = int(self._socket.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="smtp-sink", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> Sink:
        self._thread.start()
        serving = self._loop.create_server(lambda: _Session(self), sock=self._socket, backlog=1024)
        self._server = asyncio.run_coroutine_threadsafe(serving, self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
        self._socket.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions):
            session.abort()
        if self._server is not None:
            await self._server.wait_closed()


class _Session(asyncio.Protocol):
    """One SMTP connection: commands until DATA, then the message up to CRLF.CRLF."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._in_data = False
        self._scanned = 0  # where the search for the end marker resumes
        self._sender = False
        self._recipients = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._sink._sessions.add(self)  # noqa: SLF001 - the sink's own bookkeeping
        transport.write(_GREETING)

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink._sessions.discard(self)  # noqa: SLF001

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        """Answer every complete command (and message) in the buffer, in one write."""
        self._buffer += data
        replies: list[bytes] = []
        closing = False
        while not closing:
            if self._in_data:
                if not self._take_message():
                    break
                replies.append(_OK)
                continue
            end = self._buffer.find(b"\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_LINE:
                    self._buffer.clear()
                    replies.append(_TOO_LONG)
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            reply = self._command(line)
            replies.append(reply)
            closing = reply is _BYE
        if replies and self._transport is not None:
            self._transport.write(b"".join(replies))
            if closing:
                self._transport.close()

    def _command(self, line: bytes) -> bytes:
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"MAIL":
            self._sender, self._recipients = True, 0
            return _OK
        if verb == b"RCPT":
            if not self._sender:
                return _NO_SENDER
            self._recipients += 1
            return _OK
        if verb == b"DATA":
            if not self._recipients:
                return _NO_RECIPIENT
            self._in_data, self._scanned = True, 0
            return _GO_AHEAD
        if verb == b"EHLO":
            self._sender, self._recipients = False, 0
            return _EHLO
        if verb == b"HELO":
            self._sender, self._recipients = False, 0
            return b"250 localhost\r\n"
        if verb == b"RSET":
            self._sender, self._recipients = False, 0
            return _OK
        if verb == b"NOOP":
            return _OK
        if verb == b"QUIT":
            return _BYE
        return _UNKNOWN

    def _take_message(self) -> bool:
        """Count the message if its end marker has arrived (perhaps split across packets)."""
        buffer = self._buffer
        if buffer.startswith(b".\r\n"):  # an empty message: the marker right after DATA
            end = 0
        else:
            found = buffer.find(_END, self._scanned)
            if found < 0:
                self._scanned = max(0, len(buffer) - len(_END) + 1)
                return False
            end = found + 2  # the message keeps its last CRLF
        headers_end = buffer.find(b"\r\n\r\n", 0, end)
        match = CHANGE_ID.search(buffer, 0, end if headers_end < 0 else headers_end + 2)
        self._sink.record(int(match[1]) if match else -1)
        del buffer[: end + 3]
        self._in_data, self._sender, self._recipients = False, False, 0
        return True
