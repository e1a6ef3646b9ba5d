"""What the stages run with in one process: settings, the database pool, the adapters.

Built by the composition root (`herald.bootstrap`) and handed to each actor when it is
declared, so no stage reaches for a global to find its mailer or its pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from herald.config import Settings
from herald.email.mailer import Mailer
from herald.enrich.ai import Summariser


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: ConnectionPool[Any]
    mailer: Mailer
    summariser: Summariser
