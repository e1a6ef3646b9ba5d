"""A private RabbitMQ node per test session, in a temporary directory, on loopback ports.

Debian's ``/usr/sbin/rabbitmq-server`` is a wrapper that switches to the ``rabbitmq`` user
and resets the environment, so we call the real scripts under ``/usr/lib/rabbitmq/bin``.
The node gets its own Erlang cookie (``HOME`` is the temp dir for server and CLI alike) and
its own epmd port, so it never meets a system node. Tests get a fresh vhost each, created
through the management API: one HTTP call instead of a ~1 s ``rabbitmqctl`` VM start.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from tests.services import ServiceUnavailable, port_open, stable_port, wait_until

LIB_BIN = Path("/usr/lib/rabbitmq/bin")
USER = "guest"
PASSWORD = "guest"  # noqa: S105 - RabbitMQ's default account, loopback-only node
START_TIMEOUT = 90.0


def _script(name: str) -> str:
    """The real script, bypassing Debian's user-switching wrapper when it exists."""
    direct = LIB_BIN / name
    if direct.exists():
        return str(direct)
    found = shutil.which(name)
    if not found:
        raise ServiceUnavailable(f"{name} not found (apt-get install rabbitmq-server)")
    return found


class RabbitMQService:
    """What tests may rely on, whether we started the node or were given one."""

    def __init__(self, host: str, port: int, management_url: str | None) -> None:
        self.host = host
        self.port = port
        self.management_url = management_url

    def amqp_url(self, vhost: str = "/") -> str:
        """``amqp://guest:guest@host:port/<vhost>`` with the vhost percent-encoded."""
        return f"amqp://{USER}:{PASSWORD}@{self.host}:{self.port}/{quote(vhost, safe='')}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """Call the management HTTP API (``path`` after ``/api``); returns decoded JSON."""
        if not self.management_url:
            raise RuntimeError("no management API for this RabbitMQ")
        parts = urlsplit(self.management_url)
        user, password = unquote(parts.username or USER), unquote(parts.password or PASSWORD)
        base = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{parts.port}"))
        request = urllib.request.Request(
            base.rstrip("/") + "/api" + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def add_vhost(self, vhost: str) -> str:
        """Create ``vhost`` with full permissions for guest; returns its AMQP URL."""
        name = quote(vhost, safe="")
        self.api("PUT", f"/vhosts/{name}", {})
        self.api(
            "PUT", f"/permissions/{name}/{USER}", {"configure": ".*", "write": ".*", "read": ".*"}
        )
        return self.amqp_url(vhost)

    def delete_vhost(self, vhost: str) -> None:
        """Delete ``vhost`` and everything in it; missing is fine."""
        try:
            self.api("DELETE", f"/vhosts/{quote(vhost, safe='')}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise

    def queues(self, vhost: str) -> dict[str, dict[str, Any]]:
        """Queues of ``vhost`` by name, as the management API reports them (stats lag ~1 s)."""
        rows = self.api("GET", f"/queues/{quote(vhost, safe='')}")
        return {row["name"]: row for row in rows}

    def close(self) -> None:
        """Release the node at session end (nothing to do for an external one)."""


class ExternalRabbitMQ(RabbitMQService):
    """A broker named by ``HERALD_TEST_RABBITMQ_URL``.

    Fresh vhosts need its management API (``HERALD_TEST_RABBITMQ_MANAGEMENT_URL``, default
    port 15672 on the same host with the same credentials); without it tests share the
    URL's vhost.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        management = os.environ.get("HERALD_TEST_RABBITMQ_MANAGEMENT_URL") or (
            f"http://{parts.username or USER}:{parts.password or PASSWORD}@{parts.hostname}:15672"
        )
        super().__init__(parts.hostname or "127.0.0.1", parts.port or 5672, management)
        self.url = url
        self.has_api = port_open(urlsplit(management).port or 15672, parts.hostname or "127.0.0.1")

    def add_vhost(self, vhost: str) -> str:
        if not self.has_api:
            return self.url
        return super().add_vhost(vhost)

    def delete_vhost(self, vhost: str) -> None:
        if self.has_api:
            super().delete_vhost(vhost)


class LocalRabbitMQ(RabbitMQService):
    """A node of our own; also exposes ``ctl``, ``stop_app`` and ``start_app`` for fault tests."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__("127.0.0.1", stable_port(), None)
        self.base_dir = base_dir
        self.node = f"herald-test-{secrets.token_hex(4)}@localhost"
        self.dist_port = stable_port()
        self.epmd_port = stable_port()
        self.prometheus_port = stable_port()
        self.management_port = stable_port()
        self.management_url = f"http://{USER}:{PASSWORD}@127.0.0.1:{self.management_port}"
        self.log_file = base_dir / "server.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.env = self._environment()

    # -- lifecycle -------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        base = self.base_dir
        (base / "mnesia").mkdir()
        (base / "log").mkdir()
        cookie = base / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        (base / "enabled_plugins").write_text("[rabbitmq_management,rabbitmq_prometheus].\n")
        (base / "rabbitmq-env.conf").write_text("")
        (base / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.1 = 127.0.0.1:{self.port}",
                    "loopback_users = none",
                    f"management.tcp.port = {self.management_port}",
                    "management.tcp.ip = 127.0.0.1",
                    f"prometheus.tcp.port = {self.prometheus_port}",
                    "prometheus.tcp.ip = 127.0.0.1",
                    "collect_statistics_interval = 1000",
                    # A test machine with little free disk must not block publishers.
                    "disk_free_limit.absolute = 10MB",
                    "log.console = false",
                    "log.file.level = info",
                    "",
                ]
            )
        )
        env = {key: value for key, value in os.environ.items() if not key.startswith("RABBITMQ_")}
        env.update(
            HOME=str(base),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(base / "advanced.config"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(base / "plugins-expand"),
            RABBITMQ_PID_FILE=str(base / "rabbitmq.pid"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def start(self) -> None:
        """Boot the node and wait until ``rabbitmqctl await_startup`` succeeds."""
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [_script("rabbitmq-server")],
                env=self.env,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one at the end
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceUnavailable(f"rabbitmq-server exited early:\n{self.tail_log()}")
            result = self.ctl("await_startup", "--timeout", "30", check=False)
            if result.returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise ServiceUnavailable(
                f"RabbitMQ did not start in {START_TIMEOUT}s:\n{self.tail_log()}"
            )
        if not wait_until(lambda: port_open(self.management_port), timeout=30):
            raise ServiceUnavailable(f"RabbitMQ management API did not open:\n{self.tail_log()}")

    def ctl(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``rabbitmqctl -n NODE *args`` against this node; output in ``.stdout``."""
        result = subprocess.run(
            [_script("rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            cwd=self.base_dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def stop_app(self) -> None:
        """Stop RabbitMQ inside the running VM: listeners close, clients see the broker gone."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Undo ``stop_app`` and wait until AMQP and the management API listen again."""
        self.ctl("start_app")
        self.ctl("await_startup", "--timeout", "60")
        wait_until(lambda: port_open(self.port) and port_open(self.management_port), timeout=30)

    def close(self) -> None:
        """Stop the node, kill anything left of it (VM, epmd) and delete its directory."""
        if not self.base_dir.exists():
            return  # already closed
        if self.process and self.process.poll() is None:
            try:
                self.ctl("stop", check=False, timeout=60)
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        epmd = shutil.which("epmd")
        if epmd:
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"],
                env=self.env,
                capture_output=True,
                timeout=10,
                check=False,
            )
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def tail_log(self, chars: int = 4000) -> str:
        """The end of the server's console output and log, for failure messages."""
        text = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        for path in sorted((self.base_dir / "log").glob("*.log")):
            text += f"\n--- {path.name} ---\n" + path.read_text(errors="replace")
        return text[-chars:]


def start_rabbitmq() -> RabbitMQService:
    """The session's broker: ``HERALD_TEST_RABBITMQ_URL`` if set, else a fresh local node."""
    external = os.environ.get("HERALD_TEST_RABBITMQ_URL")
    if external:
        return ExternalRabbitMQ(external)
    _script("rabbitmq-server")
    _script("rabbitmqctl")
    if not shutil.which("erl"):
        raise ServiceUnavailable("Erlang (erl) not found (apt-get install rabbitmq-server)")
    node = LocalRabbitMQ(Path(tempfile.mkdtemp(prefix="herald-rmq-")))
    atexit.register(node.close)  # if the fixture's teardown never runs
    try:
        node.start()
    except BaseException:
        node.close()
        raise
    return node


def fresh_vhost_name() -> str:
    return f"herald-test-{uuid.uuid4().hex[:12]}"
