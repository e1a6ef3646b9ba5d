"""What the actors run with in this process: settings, the database pool, the adapters.

Built lazily on first use (Dramatiq forks worker processes, and a pool must not
cross a fork), or installed explicitly by the demo and the tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from psycopg_pool import ConnectionPool

from herald.config import Settings, load_settings
from herald.db import get_pool
from herald.email.smtp import Mailer, mailer_from_url
from herald.enrich.ai import Summariser, summariser_from_settings


@dataclass
class Runtime:
    settings: Settings
    pool: ConnectionPool
    mailer: Mailer
    summariser: Summariser


_runtime: Runtime | None = None
_settings: Settings | None = None
_lock = threading.Lock()


def settings() -> Settings:
    """Settings, read once per process."""
    global _settings
    with _lock:
        if _settings is None:
            _settings = _runtime.settings if _runtime else load_settings()
        return _settings


def runtime() -> Runtime:
    global _runtime
    s = settings()
    with _lock:
        if _runtime is None:
            _runtime = Runtime(
                settings=s,
                pool=get_pool(s.database_url),
                mailer=mailer_from_url(s.smtp_url),
                summariser=summariser_from_settings(
                    enabled=s.ai.enabled,
                    model=s.ai.model,
                    api_key=s.openai_api_key,
                    base_url=s.openai_base_url,
                    timeout=s.ai.timeout_seconds,
                    max_retries=s.ai.max_retries,
                ),
            )
        return _runtime


def install(runtime_: Runtime | None) -> None:
    """Use this runtime (demo, tests); None forgets it."""
    global _runtime, _settings
    with _lock:
        _runtime = runtime_
        _settings = runtime_.settings if runtime_ else None
