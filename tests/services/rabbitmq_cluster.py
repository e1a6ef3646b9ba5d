"""A three-node RabbitMQ cluster on loopback, for the scale-out tests.

Each node is a `LocalRabbitMQ` (tests/services/rabbitmq.py) with its own name, AMQP,
distribution, management and Prometheus ports and data directory; the three share one
Erlang cookie and one epmd port (nodes find each other through epmd), and nodes two and
three `rabbitmqctl join_cluster` the first. `cluster_partition_handling = pause_minority`
as docs/operations.md recommends: a node cut off from the others stops rather than
serving a split cluster. Fault levers per node: `kill` (SIGKILL, the VM and its
children), `freeze`/`thaw` (SIGSTOP/SIGCONT), `stop_app`/`start_app` (graceful), and
`restart` after a kill.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import functools
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.services import ServiceUnavailable, port_open, stable_port, wait_until
from tests.services.rabbitmq import USER, LocalRabbitMQ, RabbitMQService, _script

NODES = 3
#: Appended to each node's rabbitmq.conf.
CLUSTER_CONF = ("cluster_partition_handling = pause_minority",)


class ClusterNode(LocalRabbitMQ):
    """One node: a LocalRabbitMQ whose cookie and epmd port are the cluster's."""

    def __init__(self, base_dir: Path, cookie: str, epmd_port: int, index: int) -> None:
        self._cookie, self._shared_epmd, self.index = cookie, epmd_port, index
        self.frozen = False
        self.drained = False
        super().__init__(base_dir)

    def _environment(self) -> dict[str, str]:
        env = super()._environment()
        cookie = self.base_dir / ".erlang.cookie"
        cookie.chmod(0o600)
        cookie.write_text(self._cookie)
        cookie.chmod(0o400)
        with (self.base_dir / "rabbitmq.conf").open("a") as conf:
            conf.write("\n".join(CLUSTER_CONF) + "\n")
        self.epmd_port = self._shared_epmd
        env["ERL_EPMD_PORT"] = str(self._shared_epmd)
        return env

    # -- faults --------------------------------------------------------------------------------

    def signal(self, sig: int) -> None:
        """Send `sig` to the node's process group (the script, the VM, its helpers)."""
        assert self.process is not None
        os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.process is not None
        self.process.wait(timeout=30)

    def freeze(self) -> None:
        self.frozen = True
        self.signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)
        self.frozen = False

    def upgrade(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`rabbitmq-upgrade -n NODE *args` (`drain`: move leaders away before a stop;
        `revive`: back from maintenance mode, which survives a restart)."""
        if args[:1] in (("drain",), ("revive",)):
            self.drained = args[0] == "drain"
        return subprocess.run(
            [_script("rabbitmq-upgrade"), "-n", self.node, *args],
            env=self.env, cwd=self.base_dir, capture_output=True, text=True, timeout=120,
            check=True,
        )  # fmt: skip

    def restart(self) -> None:
        """Boot the node again after a kill; it rejoins the cluster from its data."""
        self.start()

    @property
    def alive(self) -> bool:
        """Running and listening (a frozen node's port still accepts: not alive)."""
        running = self.process is not None and self.process.poll() is None
        return running and not self.frozen and port_open(self.port)

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError, AssertionError):
            self.thaw()  # a frozen node would not stop
        super().close()


class RabbitMQCluster(RabbitMQService):
    """Three nodes; the management API and `add_vhost` go through the first one."""

    def __init__(self, base_dir: Path) -> None:
        cookie = secrets.token_hex(16).upper()
        epmd_port = stable_port()
        self.base_dir = base_dir
        self.nodes: list[ClusterNode] = []
        for index in range(NODES):
            path = base_dir / f"node{index + 1}"
            path.mkdir()
            self.nodes.append(ClusterNode(path, cookie, epmd_port, index))
        first = self.nodes[0]
        super().__init__(first.host, first.port, first.management_url)

    def start(self) -> None:
        first, rest = self.nodes[0], self.nodes[1:]
        first.start()  # first alone: it starts epmd for the others
        with concurrent.futures.ThreadPoolExecutor(len(rest)) as pool:
            list(pool.map(lambda node: node.start(), rest))
        for node in rest:
            node.ctl("stop_app")
            node.ctl("join_cluster", first.node)
            node.ctl("start_app")
        for node in self.nodes:
            node.ctl("await_startup", "--timeout", "60")
        running = first.ctl("cluster_status", "--formatter", "json").stdout
        if not all(node.node in running for node in self.nodes):
            raise ServiceUnavailable(f"the cluster did not form: {running[:2000]}")

    # -- addresses -------------------------------------------------------------------------

    def node_url(self, node: ClusterNode, vhost: str) -> str:
        return f"amqp://{USER}:guest@127.0.0.1:{node.port}/{quote(vhost, safe='')}"

    def urls(self, vhost: str, order: list[ClusterNode] | None = None) -> str:
        """HERALD_BROKER_URL for `vhost`: every node, `;`-separated, in `order`."""
        return ";".join(self.node_url(n, vhost) for n in (order or self.nodes))

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """The management API of the first node that answers."""
        error: Exception | None = None
        for node in self.nodes:
            if not node.alive:
                continue
            try:
                return node.api(method, path, body, timeout)
            except OSError as exc:
                error = exc
        raise RuntimeError(f"no node's management API answered: {error}")

    def leader_of(self, vhost: str, queue: str) -> ClusterNode:
        """The node leading quorum queue `queue` of `vhost` now."""
        found = self.api("GET", f"/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}")
        leader = found.get("leader") or found.get("node")
        for node in self.nodes:
            if node.node == leader:
                return node
        raise RuntimeError(f"queue {queue!r} is led by {leader!r}, not a node of this cluster")

    def wait_leader_elsewhere(self, vhost: str, queue: str, old: ClusterNode, timeout: float):
        """Wait until a node other than `old` leads `queue`; that node, or None."""
        found: list[ClusterNode] = []

        def moved() -> bool:
            try:
                leader = self.leader_of(vhost, queue)
            except (RuntimeError, OSError):
                return False
            if leader is not old:
                found.append(leader)
                return True
            return False

        wait_until(moved, timeout=timeout, interval=0.5)
        return found[-1] if found else None

    def ensure_running(self) -> None:
        """Every node up and in the cluster again (after a test's faults)."""
        for node in self.nodes:
            with contextlib.suppress(ProcessLookupError, AssertionError):
                node.thaw()
            if node.process is None or node.process.poll() is not None:
                node.restart()
            elif node.ctl("await_startup", "--timeout", "5", check=False).returncode != 0:
                node.ctl("start_app", check=False)
                node.ctl("await_startup", "--timeout", "60")
        for node in self.nodes:
            if node.drained:
                node.upgrade("revive")
            wait_until(functools.partial(port_open, node.port), timeout=30)

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.close()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_rabbitmq_cluster() -> RabbitMQCluster:
    """Three fresh local nodes joined into one cluster (ServiceUnavailable if it fails)."""
    _script("rabbitmq-server")
    _script("rabbitmqctl")
    if not shutil.which("erl"):
        raise ServiceUnavailable("Erlang (erl) not found (apt-get install rabbitmq-server)")
    cluster = RabbitMQCluster(Path(tempfile.mkdtemp(prefix="herald-rmq-cluster-")))
    atexit.register(cluster.close)
    started = time.monotonic()
    try:
        cluster.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        cluster.close()
        raise ServiceUnavailable(f"the RabbitMQ cluster did not start: {exc}") from exc
    except BaseException:
        cluster.close()
        raise
    cluster.boot_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return cluster
