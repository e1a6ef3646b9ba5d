"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts and fails on cue.

Failures are scripted at the points a real server refuses: a recipient at ``RCPT TO``, a
whole message at the end of ``DATA`` (after the client sent it: the case that makes retries
interesting). Optional AUTH and STARTTLS exercise the client's real code paths.
"""

from __future__ import annotations

import datetime
import email
import ipaddress
import shutil
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.services import ServiceUnavailable, free_port


@dataclass(frozen=True)
class ReceivedEmail:
    """One accepted message, as the server saw it on the wire."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage
    message_id: str | None

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def header(self, name: str) -> str | None:
        value = self.message.get(name)
        return None if value is None else str(value)


@dataclass
class _Failure:
    code: int
    text: str
    remaining: int | None = None  # None: until ``until``
    until: float = 0.0


class SmtpServer:
    """Recording SMTP server; see the module docstring for what can be scripted."""

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        starttls: bool = False,
        pipelining: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        self.pipelining = pipelining  # offered in EHLO, as production MTAs do (RFC 2920)
        self.port = free_port()
        self.username = username
        self.password = password
        self.starttls = starttls
        self.cert_path: Path | None = None
        self._tmp: Path | None = None
        self._cond = threading.Condition()
        self._messages: list[ReceivedEmail] = []
        self._failures: list[_Failure] = []
        self._rejected: dict[str, tuple[int, str]] = {}
        self.attempts = 0  # DATA commands seen, accepted or failed
        self._controller = Controller(self, **self._smtp_kwargs())

    # -- configuration ---------------------------------------------------------------------

    def _smtp_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "server_hostname": "localhost",  # skips a reverse DNS lookup per connection
            "ready_timeout": 10.0,
        }
        if self.username is not None:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.starttls,  # loopback plain-text AUTH is fine in tests
            )
        if self.starttls:
            self._tmp = Path(tempfile.mkdtemp(prefix="herald-smtp-"))
            cert, key = self_signed_certificate(self._tmp)
            self.cert_path = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            kwargs.update(tls_context=context, require_starttls=True)
        return kwargs

    @property
    def url(self) -> str:
        """``smtp://[user:pass@]127.0.0.1:PORT[?starttls=true]`` as Herald's config expects."""
        credentials = ""
        if self.username is not None:
            credentials = f"{quote(self.username, safe='')}:{quote(self.password or '', safe='')}@"
        query = "?starttls=true" if self.starttls else ""
        return f"smtp://{credentials}{self.host}:{self.port}{query}"

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -- what tests read -------------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedEmail]:
        """A snapshot of accepted messages, oldest first."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedEmail]:
        """Block until at least ``count`` messages were accepted; returns them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise AssertionError(
                    f"expected {count} emails within {timeout}s, got {len(self._messages)}"
                )
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    # -- what tests script -----------------------------------------------------------------

    def fail_next(self, n: int = 1, code: int = 451, text: str = "try later") -> None:
        """Refuse the next ``n`` messages at end of DATA (4xx: transient, 5xx: permanent)."""
        with self._cond:
            self._failures.append(_Failure(code, text, remaining=n))

    def fail_for(self, seconds: float, code: int = 451, text: str = "try later") -> None:
        """Refuse every message for the next ``seconds``."""
        with self._cond:
            self._failures.append(_Failure(code, text, until=time.monotonic() + seconds))

    def reject_recipient(self, addr: str, code: int = 550, text: str = "no such user") -> None:
        """Refuse ``addr`` at RCPT TO from now on (case-insensitive)."""
        with self._cond:
            self._rejected[addr.lower()] = (code, text)

    def _take_failure(self) -> _Failure | None:
        with self._cond:
            now = time.monotonic()
            for failure in list(self._failures):
                if failure.remaining is None:
                    if now < failure.until:
                        return failure
                    self._failures.remove(failure)
                    continue
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
                return failure
            return None

    # -- aiosmtpd handler hooks (called on the controller's thread) ------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == (self.password or "")
        )
        return AuthResult(success=ok, handled=False)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list:
        # aiosmtpd reads commands one at a time from its stream, so it serves pipelined
        # commands correctly; it only does not say so.
        session.host_name = hostname  # a hook takes over this duty from aiosmtpd
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list
    ) -> str:
        with self._cond:
            rejected = self._rejected.get(address.lower())
        if rejected:
            return f"{rejected[0]} {rejected[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._cond:
            self.attempts += 1
        failure = self._take_failure()
        if failure:
            return f"{failure.code} {failure.text}"
        data = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not data:
            data = envelope.content
        message = email.message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message_id = message.get("Message-ID")
        received = ReceivedEmail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            message=message,
            message_id=str(message_id).strip() if message_id else None,
        )
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()
        return "250 Message accepted for delivery"


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost/127.0.0.1: ``cryptography`` or the openssl CLI."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        _certificate_with_cryptography(cert, key)
    except ImportError:
        openssl = shutil.which("openssl")
        if not openssl:
            raise ServiceUnavailable("STARTTLS needs the cryptography package or openssl") from None
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return cert, key


def _certificate_with_cryptography(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def start_smtp(
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    pipelining: bool = True,
) -> SmtpServer:
    """A started server; raises ServiceUnavailable if it cannot listen."""
    server = SmtpServer(
        username=username, password=password, starttls=starttls, pipelining=pipelining
    )
    try:
        return server.start()
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise ServiceUnavailable(f"aiosmtpd did not start: {exc}") from exc
