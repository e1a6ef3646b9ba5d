"""`herald check`'s services: RabbitMQ connects, SMTP answers EHLO (and takes the login),
the AI endpoint answers. Each check opens one connection, bounded by `TIMEOUT`, and
closes it; nothing is published, sent or billed beyond one token when the model must be
tried. Details name hosts and ports, never a password or a key.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
from collections.abc import Callable, Iterator
from urllib.parse import unquote, urlsplit

from herald.check.results import TIMEOUT, CheckResult, fail, first_line, ok, skip, warn
from herald.config import Settings
from herald.rabbitmq_version import server_version, too_old_for_quorum
from herald.redact import scheme_of


def broker_nodes(url: str) -> list[str]:
    """The nodes of HERALD_BROKER_URL (several may be separated by `;`)."""
    return [u.strip() for u in url.split(";") if u.strip()]


def node_address(url: str) -> str:
    """`host:port/vhost` of an AMQP URL, without its credentials (nothing of a URL that
    is not one: `herald:PASSWORD@rabbit/herald` has no scheme, and urlsplit would make
    its password part of the path)."""
    if scheme_of(url) not in ("amqp", "amqps"):
        return "a URL without amqp:// or amqps://"
    parts = urlsplit(url)
    if "@" in parts.path:  # a password holding "/": the rest of it is no vhost
        return "a malformed amqp:// URL"
    default = 5671 if parts.scheme == "amqps" else 5672
    try:
        port = parts.port or default
    except ValueError:
        port = default
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return f"{parts.hostname or 'localhost'}:{port} vhost {vhost}"


def _amqp_reason(exc: BaseException) -> str:
    """pika wraps the reason (in `args`, or in an `exception` attribute); the innermost
    one says it: `Connection refused`, `ACCESS_REFUSED - Login was refused ...` (never
    the URL)."""
    inner: BaseException = exc
    for _ in range(5):
        nested = getattr(inner, "exception", None)
        if isinstance(nested, BaseException):
            inner = nested
        elif inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        else:
            break
    if isinstance(inner, OSError) and inner.strerror:
        return inner.strerror
    text = str(inner).strip()
    return (text.splitlines()[0] if text else type(inner).__name__)[:200]


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Silence a library's logger for the duration (a check reports failures itself)."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def check_rabbitmq(settings: Settings) -> CheckResult:
    """Each node of HERALD_BROKER_URL accepts a connection (opened, then closed); in
    quorum mode, each runs RabbitMQ 3.10 or later (herald/rabbitmq_version.py)."""
    url = settings.broker_url
    if url.startswith("stub:"):
        return skip("rabbitmq", "stub:// broker (in-process, tests and the demo)")
    import pika

    answered, refused, too_old = [], [], []
    quorum = settings.broker.queue_type == "quorum"
    for node in broker_nodes(url):
        address = node_address(node)
        try:
            params = pika.URLParameters(node)
            params.socket_timeout = TIMEOUT
            params.stack_timeout = TIMEOUT
            params.blocked_connection_timeout = TIMEOUT
            params.connection_attempts = 1
            params.retry_delay = 0
            with _quiet("pika"):  # its own ERROR lines and tracebacks: the result says it
                connection = pika.BlockingConnection(params)
        except Exception as exc:  # noqa: BLE001 - pika raises many kinds; each is one line
            refused.append(f"{address}: {_amqp_reason(exc)}")
            continue
        version = server_version(connection)
        connection.close()
        if quorum and too_old_for_quorum(version):
            too_old.append(f"{address}: RabbitMQ {'.'.join(map(str, version or ()))}")
            continue
        answered.append(address)
    if too_old:
        return fail(
            "rabbitmq",
            f'[broker] queue_type = "quorum" needs RabbitMQ 3.10 or later: {"; ".join(too_old)}',
        )
    if not answered:
        return fail("rabbitmq", f"cannot connect: {'; '.join(refused)}")
    if refused:
        return warn("rabbitmq", f"{', '.join(answered)} connected; {'; '.join(refused)}")
    return ok("rabbitmq", f"{', '.join(answered)}: connected{' (quorum queues)' if quorum else ''}")


def check_smtp(settings: Settings) -> CheckResult:
    """The SMTP server answers EHLO, STARTTLS when asked, and takes the login if any."""
    from herald.email.smtp import SmtpSettings

    if settings.smtp_url.startswith("file:"):
        return skip("smtp", "file:// mail: emails are written to a folder")
    try:
        s = SmtpSettings.from_url(settings.smtp_url)
    except ValueError as exc:
        return fail("smtp", f"HERALD_SMTP_URL: {exc}")
    address = f"{s.host}:{s.port}"
    context = ssl.create_default_context()
    try:
        conn = (
            smtplib.SMTP_SSL(s.host, s.port, timeout=TIMEOUT, context=context)
            if s.tls
            else smtplib.SMTP(s.host, s.port, timeout=TIMEOUT)
        )
    except (OSError, smtplib.SMTPException) as exc:
        return fail("smtp", f"{address}: cannot connect: {_os_reason(exc)}")
    try:
        code, _ = conn.ehlo()
        if code != 250:
            return fail("smtp", f"{address}: EHLO answered {code}")
        steps = ["EHLO"]
        if s.starttls:
            conn.starttls(context=context)
            conn.ehlo()
            steps.append("STARTTLS")
        if s.username is not None:
            conn.login(s.username, s.password or "")
            steps.append(f"logged in as {s.username}")
    except smtplib.SMTPAuthenticationError as exc:
        return fail("smtp", f"{address}: login as {s.username} refused ({exc.smtp_code})")
    except (OSError, smtplib.SMTPException) as exc:
        return fail("smtp", f"{address}: {_os_reason(exc)}")
    finally:
        _quit(conn)
    return ok("smtp", f"{address}: {', '.join(steps)}")


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return f"no answer within {TIMEOUT:g}s"
    return getattr(exc, "strerror", None) or first_line(exc)


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def check_ai(settings: Settings) -> CheckResult:
    """The endpoint answers with this key: its models list names the model, or else the
    model answers a one-token completion."""
    if not settings.ai.enabled:
        return skip("ai", "AI off ([ai] enabled = false)")
    if not settings.openai_api_key:
        return skip("ai", "AI off (no OPENAI_API_KEY): emails carry the offline summary")
    import openai

    base, model = settings.openai_base_url, settings.ai.model
    client = openai.OpenAI(
        api_key=settings.openai_api_key, base_url=base, timeout=TIMEOUT, max_retries=0
    )
    try:
        try:
            listed = {m.id for m in client.models.list()}
        except openai.NotFoundError:  # servers without a models list
            listed = set()
        if model in listed:
            return ok("ai", f"{base}: answered, model {model} listed")
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "ping"}], max_tokens=1
        )
    except openai.AuthenticationError:
        return fail("ai", f"{base}: the key was refused (401)")
    except openai.APIStatusError as exc:
        return fail("ai", f"{base}: model {model}: HTTP {exc.status_code}")
    except openai.APIError as exc:  # connection errors and timeouts
        return fail("ai", f"{base}: {type(exc).__name__}: {first_line(exc)}")
    finally:
        client.close()
    return ok("ai", f"{base}: model {model} answered a one-token completion")


SERVICE_CHECKS: tuple[Callable[[Settings], CheckResult], ...] = (
    check_rabbitmq,
    check_smtp,
    check_ai,
)
