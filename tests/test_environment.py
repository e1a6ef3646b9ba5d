"""Where the environment comes from (`.env` in the current folder, HERALD_ENV_FILE, the
process winning over both), and no silent default for the database or the broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.bootstrap import bootstrap
from herald.config import DEFAULT_OPENAI_BASE_URL, ConfigError, load_settings
from herald.testing import FakeMailer
from tests.helpers import make_settings

DB = "postgresql://herald@db.invalid:5432/herald"
MQ = "amqp://herald@mq.invalid:5672/herald"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No HERALD_* or OPENAI_* variables, and an empty current folder."""
    import os

    for name in list(os.environ):
        if name.startswith(("HERALD_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_dot_env_in_the_current_folder_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(f"HERALD_DATABASE_URL={DB}\nHERALD_BROKER_URL={MQ}\n")
    s = load_settings()
    assert (s.database_url, s.broker_url) == (DB, MQ)


def test_the_environment_wins_over_the_dot_env(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text(f"HERALD_DATABASE_URL={DB}\nHERALD_BROKER_URL={MQ}\n")
    monkeypatch.setenv("HERALD_DATABASE_URL", "postgresql://from-the-environment/x")
    s = load_settings()
    assert (s.database_url, s.broker_url) == ("postgresql://from-the-environment/x", MQ)


def test_herald_env_file_names_another_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (clean_env / ".env").write_text("HERALD_DATABASE_URL=postgresql://not-this-one/x\n")
    other = tmp_path_factory.mktemp("elsewhere") / "herald.env"
    other.write_text(f"HERALD_DATABASE_URL={DB}\nHERALD_BROKER_URL={MQ}\n")
    monkeypatch.setenv("HERALD_ENV_FILE", str(other))
    assert load_settings().database_url == DB


def test_a_herald_env_file_that_does_not_exist_is_refused(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_ENV_FILE", str(clean_env / "missing.env"))
    with pytest.raises(ConfigError, match=r"HERALD_ENV_FILE: .*missing.env is not a file"):
        load_settings()


def test_a_missing_database_url_is_an_error_naming_it_with_an_example(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_BROKER_URL", MQ)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith("HERALD_DATABASE_URL is not set")
    assert "e.g. HERALD_DATABASE_URL=postgresql://" in message
    assert "HERALD_BROKER_URL" not in message


def test_with_nothing_set_both_variables_are_named(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match="HERALD_DATABASE_URL and HERALD_BROKER_URL are not set"):
        load_settings()


def test_a_blank_broker_url_is_as_missing_as_an_absent_one(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_DATABASE_URL", DB)
    monkeypatch.setenv("HERALD_BROKER_URL", "  ")
    with pytest.raises(ConfigError, match="^HERALD_BROKER_URL is not set"):
        load_settings()


def test_a_command_that_only_reads_the_database_needs_no_broker(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_DATABASE_URL", DB)
    assert load_settings(require=("HERALD_DATABASE_URL",)).database_url == DB


def test_an_empty_openai_base_url_means_the_default_endpoint(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compose sets `${OPENAI_BASE_URL:-}`; the openai client, given None, would read the
    empty variable again and use "" as its base URL."""
    monkeypatch.setenv("OPENAI_BASE_URL", "")
    settings = make_settings(DB, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL="")
    assert settings.openai_base_url == DEFAULT_OPENAI_BASE_URL
    app = bootstrap(settings, mailer=FakeMailer(), pool=_NoPool())  # type: ignore[arg-type]
    try:
        client = app.summariser._client  # type: ignore[attr-defined]
        assert str(client.base_url).rstrip("/") == DEFAULT_OPENAI_BASE_URL
    finally:
        app.broker.close()


def test_a_set_openai_base_url_is_used_as_given() -> None:
    settings = make_settings(DB, OPENAI_BASE_URL=" http://127.0.0.1:8000/v1 ")
    assert settings.openai_base_url == "http://127.0.0.1:8000/v1"


class _NoPool:
    """bootstrap builds no pool when given one; this one is never used."""

    def close(self) -> None:
        pass
