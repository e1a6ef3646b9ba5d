"""Worker metrics across processes: the directory every worker process writes its values
to, and the one endpoint that serves them all.

prometheus_client's multiprocess mode keeps each process's values in files of one
directory; a booting process empties what a previous run left there (only when no
other Herald worker still uses it), and whichever process holds the server lock serves
the directory. `monitoring.prometheus` (the middleware) drives this module.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from monitoring import metrics as catalogue

logger = logging.getLogger(__name__)

#: Environment variable prometheus_client reads to pick multiprocess storage.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Directory lock held (exclusively) while a booting process decides whether to empty
#: the metrics directory.
SETUP_LOCK = ".herald-setup.lock"

#: Held *shared* by every live worker process for its whole life. A booting process
#: that can take it exclusively knows no other Herald worker uses the directory: the
#: files there are a previous run's, and it empties it.
LIVE_LOCK = ".herald-live.lock"

#: Held exclusively by the one process serving the exposition endpoint.
SERVER_LOCK = ".herald-server.lock"


def default_multiproc_dir(port: int) -> str:
    """``<system temp dir>/herald-metrics/<port>``: two worker CLIs on one machine
    with different ports never share (or wipe) each other's files."""
    return os.path.join(tempfile.gettempdir(), "herald-metrics", str(port))


def prepare_directory(path: Path) -> Any:
    """Empty ``path`` if no other live Herald worker process uses it; returns the live lock
    this process then holds (shared) for its whole life: keep it open."""
    path.mkdir(parents=True, exist_ok=True)
    with (path / SETUP_LOCK).open("a+") as setup:
        fcntl.flock(setup, fcntl.LOCK_EX)  # booting processes take turns here
        live = (path / LIVE_LOCK).open("a+")  # noqa: SIM115 - held by the caller
        try:
            fcntl.flock(live, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # other workers are alive: their files are current
        else:
            removed = _empty(path)
            logger.debug("Emptied %s (%d files of a previous run)", path, removed)
        # Downgrade (or take) the shared lock: we are live from now on.
        fcntl.flock(live, fcntl.LOCK_SH)
        fcntl.flock(setup, fcntl.LOCK_UN)
    return live


def _empty(path: Path) -> int:
    removed = 0
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed


def create_multiprocess_metrics(path: Path) -> catalogue.WorkerMetrics:
    """Create the worker metrics with their values in ``path``'s files.

    prometheus_client chooses the value storage once, when ``prometheus_client.values``
    is first imported (``values.ValueClass``), not when a metric is created. Herald's
    modules import prometheus_client before any boot hook runs, so after pointing
    ``PROMETHEUS_MULTIPROC_DIR`` at ``path`` the choice is made again here.
    """
    os.environ[MULTIPROC_ENV] = str(path)
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    return catalogue.create_worker_metrics(registry=None)


class _LiveMultiProcessCollector:
    """``MultiProcessCollector`` that first drops the ``running`` gauge files of worker
    processes that died without shutting down (SIGKILL, OOM): their in-flight
    attempts are not running any more."""

    def __init__(self, path: str) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.path = path
        self.inner = MultiProcessCollector(None, path=path)

    def collect(self) -> Iterator[Any]:
        from prometheus_client import multiprocess

        for pid in _dead_pids(Path(self.path).glob("gauge_live*.db")):
            multiprocess.mark_process_dead(pid, self.path)
        return self.inner.collect()


def _dead_pids(files: Iterable[Path]) -> set[int]:
    dead = set()
    for file in files:
        try:
            pid = int(file.stem.rsplit("_", 1)[1])
        except (IndexError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(pid)
        except PermissionError:
            pass  # alive, someone else's
    return dead


def start_exposition_server(host: str, port: int, path: str) -> Any:
    """Serve every worker process's values in ``path`` on ``http://host:port/``."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LiveMultiProcessCollector(path))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
