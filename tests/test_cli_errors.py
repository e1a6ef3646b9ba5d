"""What the `herald` commands say when the world is not ready: one line that names what to
fix, a non-zero exit, within seconds. Run as a user runs them: subprocesses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.services import free_port

SECRET = "s3cret-Passw0rd"


def herald(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The console script with only `env` for HERALD_* and OPENAI_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "OPENAI_"))}
    exe = shutil.which("herald")
    command = [exe] if exe else [sys.executable, "-m", "herald.cli.main"]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_with_nothing_configured_a_command_names_the_missing_variable(tmp_path: Path) -> None:
    result = herald("stats", cwd=tmp_path)
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith("herald: configuration error: HERALD_DATABASE_URL is not set")
    assert "e.g. HERALD_DATABASE_URL=postgresql://" in line


def test_orchestrate_needs_the_broker_too(tmp_path: Path) -> None:
    result = herald(
        "orchestrate", cwd=tmp_path, HERALD_DATABASE_URL="postgresql://db.example.com/herald"
    )
    assert result.returncode == 2
    assert "HERALD_BROKER_URL is not set" in one_line(result)


def test_orchestrate_with_the_database_down_fails_fast_in_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = herald(
        "orchestrate",
        cwd=tmp_path,
        HERALD_DATABASE_URL=f"postgresql://herald:{SECRET}@127.0.0.1:{port}/herald",
        HERALD_BROKER_URL="amqp://guest:guest@127.0.0.1:1/%2F",
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = one_line(result)
    assert line == (
        f"herald: cannot reach the database at 127.0.0.1:{port} (HERALD_DATABASE_URL): "
        "Connection refused"
    )
    assert SECRET not in result.stderr + result.stdout
    assert elapsed < 5, elapsed


@pytest.mark.parametrize("command", [["stats"], ["jobs", "list"], ["track", "members"]])
def test_the_database_down_is_one_line_for_every_command(tmp_path: Path, command) -> None:
    url = f"postgresql://herald:{SECRET}@127.0.0.1:{free_port()}/herald"
    result = herald(*command, cwd=tmp_path, HERALD_DATABASE_URL=url)
    assert result.returncode == 1
    assert "cannot reach the database at 127.0.0.1:" in one_line(result)
    assert SECRET not in result.stderr


def test_a_malformed_database_url_is_refused_without_echoing_it(tmp_path: Path) -> None:
    result = herald("stats", cwd=tmp_path, HERALD_DATABASE_URL=f"postgres//herald:{SECRET}@h/db")
    assert result.returncode == 1
    assert one_line(result) == "herald: HERALD_DATABASE_URL is not a valid PostgreSQL URL"


@pytest.mark.parametrize(
    "command",
    [["stats"], ["jobs", "list"], ["jobs", "show", "1"], ["track", "members"], ["orchestrate"]],
)
def test_before_db_upgrade_every_command_says_to_run_it(
    tmp_path: Path, database_url: str, command
) -> None:
    result = herald(
        *command, cwd=tmp_path, HERALD_DATABASE_URL=database_url, HERALD_BROKER_URL="stub://"
    )
    assert result.returncode == 1
    assert one_line(result) == "herald: the herald schema is missing: run `herald db upgrade`"


def test_db_upgrade_then_stats_works_from_a_dot_env(tmp_path: Path, database_url: str) -> None:
    (tmp_path / ".env").write_text(f"HERALD_DATABASE_URL={database_url}\n")
    upgraded = herald("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith("applied 0001_initial")
    stats = herald("stats", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "unclaimed changes: 0" in stats.stdout


def test_orchestrate_with_the_broker_down_claims_nothing_and_says_so(
    tmp_path: Path, herald_db: str
) -> None:
    from tests.helpers import sql

    sql(herald_db, "INSERT INTO classes (title) VALUES ('Yoga'); UPDATE classes SET seats = 3")
    port = free_port()
    result = herald(
        "orchestrate",
        cwd=tmp_path,
        HERALD_DATABASE_URL=herald_db,
        HERALD_BROKER_URL=f"amqp://herald:{SECRET}@127.0.0.1:{port}/herald",
    )
    assert result.returncode == 1
    assert one_line(result) == (
        f"herald: cannot reach the broker (HERALD_BROKER_URL): 127.0.0.1:{port} vhost herald: "
        "Connection refused"
    )
    unclaimed = sql(
        herald_db, "SELECT count(*) AS n FROM herald.change_log WHERE claimed_at IS NULL"
    )
    assert unclaimed[0]["n"] == 2


def test_a_herald_env_file_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    result = herald("stats", cwd=tmp_path, HERALD_ENV_FILE=str(missing))
    assert result.returncode == 2
    assert (
        one_line(result) == f"herald: configuration error: HERALD_ENV_FILE: {missing} is not a file"
    )
