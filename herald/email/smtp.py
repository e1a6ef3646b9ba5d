"""Sending email over SMTP: the client, its settings, and the mailer a URL names.

The SMTP client maps every failure onto ``TransientError`` (try again later)
or ``PermanentError`` (never retry) so the email step needs no knowledge of
``smtplib``. The envelope (MAIL FROM / RCPT TO) is always given explicitly and
never read from the rendered headers.
"""

from __future__ import annotations

import contextlib
import functools
import re
import smtplib
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from herald.email.mailer import FileMailer, Mailer, check_envelope
from herald.errors import HeraldError, PermanentError, TransientError
from herald.redact import scheme_of

__all__ = [
    "FileMailer",
    "Mailer",
    "SmtpMailer",
    "SmtpSettings",
    "mailer_from_url",
]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to reach the SMTP server; ``tls`` is implicit TLS (smtps://)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    starttls: bool = False
    timeout: float = 30.0

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; the password must not.
        password = "'***'" if self.password is not None else "None"
        return (
            f"SmtpSettings(host={self.host!r}, port={self.port!r}, "
            f"username={self.username!r}, password={password}, tls={self.tls!r}, "
            f"starttls={self.starttls!r}, timeout={self.timeout!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_url(cls, url: str) -> SmtpSettings:
        """Parse ``smtp[s]://[user:pass@]host[:port][?starttls=true][&timeout=10]``.

        Credentials are percent-decoded. Errors say what is wrong without
        repeating the URL, which may hold a password.
        """
        try:
            parts = urlsplit(url.strip())
        except ValueError as exc:
            raise ValueError(f"SMTP URL cannot be parsed: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("smtp", "smtps") or scheme_of(url.strip()) != scheme:
            raise ValueError(
                f"SMTP URL scheme must be smtp:// or smtps://, not {scheme_of(url) or 'missing'!r}"
            )
        host = parts.hostname
        if not host:
            raise ValueError("SMTP URL has no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("SMTP URL port is not a number between 0 and 65535") from None
        if port is None:
            port = 465 if scheme == "smtps" else 25
        if port == 0:
            raise ValueError("SMTP URL port must not be 0")
        if parts.path not in ("", "/") or parts.fragment:
            raise ValueError("SMTP URL must not have a path or fragment")

        starttls = False
        timeout = 30.0
        try:
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ValueError("SMTP URL query string is malformed") from None
        for key, value in query:
            if key == "starttls":
                if value.lower() not in _TRUE | _FALSE:
                    raise ValueError(f"SMTP URL starttls must be true or false, not {value!r}")
                starttls = value.lower() in _TRUE
            elif key == "timeout":
                try:
                    timeout = float(value)
                except ValueError:
                    raise ValueError(
                        f"SMTP URL timeout must be a number of seconds, not {value!r}"
                    ) from None
                if not 0 < timeout < float("inf"):
                    raise ValueError("SMTP URL timeout must be a positive number of seconds")
            else:
                raise ValueError(f"SMTP URL has an unknown parameter {key!r}")
        if starttls and scheme == "smtps":
            raise ValueError("SMTP URL cannot use both smtps:// and starttls=true")

        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if password is not None and username is None:
            raise ValueError("SMTP URL has a password but no user name")
        return cls(
            host=host,
            port=port,
            username=username,
            password=password,
            tls=scheme == "smtps",
            starttls=starttls,
            timeout=timeout,
        )


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())


def _by_code(code: int, text: str) -> HeraldError:
    """5xx never gets better by retrying; 4xx and anything odd might."""
    message = f"SMTP {code}: {text}"
    if 500 <= code <= 599:
        return PermanentError(message)
    return TransientError(message)


class SmtpMailer:
    """SMTP client: one connection per thread, kept open and reused across sends.

    A connection the server has closed while idle is detected on the next send
    and replaced once; any other failure drops the connection and raises.
    """

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self._ssl_context = ssl_context
        self._local_hostname = local_hostname
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[smtplib.SMTP] = set()

    def __repr__(self) -> str:
        return f"SmtpMailer({self.settings!r})"

    def _context(self) -> ssl.SSLContext:
        return self._ssl_context or ssl.create_default_context()

    def _open(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP
        if s.tls:
            conn = smtplib.SMTP_SSL(
                s.host,
                s.port,
                local_hostname=self._local_hostname,
                timeout=s.timeout,
                context=self._context(),
            )
        else:
            conn = smtplib.SMTP(
                s.host, s.port, local_hostname=self._local_hostname, timeout=s.timeout
            )
        try:
            conn.ehlo()
            if s.starttls:
                conn.starttls(context=self._context())
                conn.ehlo()
            if s.username is not None:
                conn.login(s.username, s.password or "")
        except BaseException:
            _quietly_close(conn)
            raise
        return conn

    def _connection(self) -> tuple[smtplib.SMTP, bool]:
        """This thread's connection and whether it was reused (may have gone stale)."""
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            return conn, True
        conn = self._open()
        self._local.conn = conn
        with self._lock:
            self._connections.add(conn)
        return conn, False

    def _drop(self) -> None:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._lock:
                self._connections.discard(conn)
            _quietly_close(conn)

    def send(self, message: bytes, *, from_addr: str, to_addrs: Sequence[str]) -> None:
        """Send the message (as `herald.email.mime` wrote it) to exactly ``to_addrs``.

        Raises Transient/PermanentError on failure.

        With several recipients, a partial refusal raises too although the
        others were accepted: send one recipient per call to account per
        recipient.
        """
        recipients = check_envelope(from_addr, to_addrs)
        where = f"{self.settings.host}:{self.settings.port}"
        reused = False
        try:
            try:
                conn, reused = self._connection()
                refused = _sendmail(conn, from_addr, recipients, message)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                # An idle connection the server timed out: one fresh try.
                self._drop()
                conn, _ = self._connection()
                refused = _sendmail(conn, from_addr, recipients, message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(exc.recipients, accepted=0) from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421 or not 400 <= exc.smtp_code <= 599:
                self._drop()
            raise _by_code(exc.smtp_code, _text(exc.smtp_error)) from None
        except smtplib.SMTPServerDisconnected as exc:
            self._drop()
            raise TransientError(f"SMTP server {where} disconnected: {exc}") from None
        except smtplib.SMTPNotSupportedError as exc:
            self._drop()
            raise PermanentError(f"SMTP server {where} does not support it: {exc}") from None
        except smtplib.SMTPException as exc:
            self._drop()
            raise TransientError(f"SMTP error with {where}: {exc}") from None
        except OSError as exc:  # refused, reset, DNS, TLS, and socket timeouts
            self._drop()
            raise TransientError(
                f"SMTP connection to {where} failed: {type(exc).__name__}: {exc}"
            ) from None
        except (ValueError, UnicodeError) as exc:
            # smtplib refuses addresses with newlines or non-ASCII without SMTPUTF8.
            self._drop()
            raise PermanentError(f"SMTP cannot send this message: {exc}") from None
        if refused:
            raise _refused(refused, accepted=len(recipients) - len(refused))

    def close(self) -> None:
        """Close every thread's connection (QUIT, ignoring errors)."""
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        self._local.conn = None
        for conn in connections:
            _quietly_close(conn)


def _sendmail(
    conn: smtplib.SMTP, from_addr: str, recipients: list[str], message: bytes
) -> dict[str, tuple[int, bytes]]:
    """``conn.sendmail``, pipelined (RFC 2920) when the server offers PIPELINING.

    smtplib waits for a reply to each of MAIL, RCPT and DATA before sending the next;
    every MTA in production use (Postfix, Exim, Exchange, the big relays) offers
    PIPELINING, which lets all three go in one write: two round trips per message
    instead of four. Failures raise smtplib's own exceptions, as ``sendmail`` does,
    and leave the connection ready for the next message (RSET).
    """
    if not conn.has_extn("pipelining"):
        return conn.sendmail(from_addr, recipients, message)
    size = f" SIZE={len(message)}" if conn.has_extn("size") else ""
    commands = [f"MAIL FROM:{_quoted(from_addr)}{size}"]
    commands += [f"RCPT TO:{_quoted(r)}" for r in recipients]
    conn.send("".join(f"{c}\r\n" for c in [*commands, "DATA"]))
    mail = conn.getreply()
    replies = {r: conn.getreply() for r in recipients}
    data = conn.getreply()
    refused = {r: reply for r, reply in replies.items() if reply[0] not in (250, 251)}
    closing = 421 in (mail[0], data[0], *(code for code, _ in refused.values()))
    if data[0] == 354 and not closing and (mail[0] != 250 or len(refused) == len(recipients)):
        conn.send(b".\r\n")  # DATA was accepted although nothing can be sent: end it empty
        conn.getreply()
    if mail[0] != 250:
        _reset(conn, closing)
        raise smtplib.SMTPSenderRefused(mail[0], mail[1], from_addr)
    if len(refused) == len(recipients):
        _reset(conn, closing)
        raise smtplib.SMTPRecipientsRefused(refused)
    if data[0] != 354:
        _reset(conn, closing)
        raise smtplib.SMTPDataError(*data)
    body = _DOT_AT_LINE_START.sub(b"..", message)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    conn.send(body + b".\r\n")
    code, reply = conn.getreply()
    if code != 250:
        _reset(conn, code == 421)
        raise smtplib.SMTPDataError(code, reply)
    return refused


def _reset(conn: smtplib.SMTP, closing: bool) -> None:
    """After a refusal: close when the server said 421, else RSET for the next message."""
    if closing:
        conn.close()
        return
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        conn.rset()


#: smtplib.quoteaddr, remembered: the same few addresses are quoted on every message.
_quoted = functools.lru_cache(maxsize=4096)(smtplib.quoteaddr)
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")


def _refused(recipients: dict[str, tuple[int, bytes]], *, accepted: int) -> HeraldError:
    """One error for refused recipients: permanent only when every refusal is 5xx."""
    codes = [code for code, _ in recipients.values()]
    if len(recipients) == 1:
        code, text = next(iter(recipients.values()))
        error = _by_code(code, _text(text))
    else:
        detail = "; ".join(
            f"{addr}: {code} {_text(text)}" for addr, (code, text) in recipients.items()
        )
        worst = min(codes) if any(400 <= c <= 499 for c in codes) else max(codes)
        error = _by_code(worst, f"recipients refused: {detail}")
    if accepted:
        error.args = (f"{error.args[0]} (accepted for {accepted} other recipient(s))",)
    return error


def _quietly_close(conn: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        conn.quit()
    with contextlib.suppress(OSError):
        conn.close()


def mailer_from_url(url: str) -> Mailer:
    """``smtp://`` and ``smtps://`` give an ``SmtpMailer``; ``file:///dir`` a ``FileMailer``."""
    # The scheme only when well formed: in `herald:PASSWORD@mail:25` "herald" is the user.
    scheme = scheme_of(url) or ""
    if scheme in ("smtp", "smtps"):
        return SmtpMailer(SmtpSettings.from_url(url))
    if scheme == "file":
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError("file:// mail URL must be file:///absolute/path")
        if not parts.path:
            raise ValueError("file:// mail URL has no directory")
        return FileMailer(unquote(parts.path))
    raise ValueError(
        f"mail URL scheme must be smtp://, smtps:// or file://, not {scheme or 'missing'!r}"
    )
