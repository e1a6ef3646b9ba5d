"""Where Herald's environment comes from: the process, over a `.env` file.

The `.env` file is `HERALD_ENV_FILE` when that is set, else `.env` in the current folder
(not the folder of an installed package: python-dotenv's own search starts there).
Variables of the process win over the file, so a deployment can override it.

Outside `herald demo`, Herald never guesses where its database and broker are: a default
broker URL once published a newcomer's jobs into someone else's RabbitMQ. `require`
refuses a missing one, naming it and showing an example.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from dotenv import dotenv_values

from herald.errors import ConfigError

ENV_FILE_VARIABLE = "HERALD_ENV_FILE"
DATABASE_URL = "HERALD_DATABASE_URL"
BROKER_URL = "HERALD_BROKER_URL"

#: The variables with no default outside the demo, each with an example of its value.
EXAMPLES: dict[str, str] = {
    DATABASE_URL: "postgresql://herald:PASSWORD@db.example.com:5432/herald",
    BROKER_URL: "amqp://herald:PASSWORD@mq.example.com:5672/herald",
}
#: What the worker, the scheduler and `herald orchestrate` need: both.
SERVICES: tuple[str, ...] = (DATABASE_URL, BROKER_URL)


def env_file(environ: Mapping[str, str]) -> Path | None:
    """The `.env` file to read: `HERALD_ENV_FILE` (which must exist), else `./.env` if any."""
    named = (environ.get(ENV_FILE_VARIABLE) or "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigError(f"{ENV_FILE_VARIABLE}: {path} is not a file")
        return path
    local = Path.cwd() / ".env"
    return local if local.is_file() else None


def read_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment over the `.env` file's values (the environment wins)."""
    environ = os.environ if environ is None else environ
    path = env_file(environ)
    from_file = dotenv_values(path) if path is not None else {}
    return {**{k: v for k, v in from_file.items() if v is not None}, **environ}


def missing(env: Mapping[str, str], names: Iterable[str]) -> list[str]:
    """The variables of `names` that are unset or blank in `env`."""
    return [name for name in names if not (env.get(name) or "").strip()]


def require(env: Mapping[str, str], names: Iterable[str]) -> None:
    """Refuse to go on without `names`, naming each missing one with an example value."""
    absent = missing(env, names)
    if not absent:
        return
    examples = " ".join(f"{name}={EXAMPLES.get(name, '...')}" for name in absent)
    verb, pronoun = ("is", "it") if len(absent) == 1 else ("are", "them")
    raise ConfigError(
        f"{' and '.join(absent)} {verb} not set: set {pronoun} in the environment or in "
        f"./.env, e.g. {examples} (`herald demo` needs none)"
    )
