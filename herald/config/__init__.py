"""Herald's settings: read once from the environment (and `.env`) plus `herald.toml`.

Settings are an immutable value passed explicitly to the services that need them; nothing
reads the environment behind the caller's back. Bad configuration is refused at start with
one line that names the problem: the section or route, the option, the value, and for an
unknown option the closest known one.

The package: `values.py` (shared value types, email addresses), `routes.py` (`[[routes]]`),
`sections.py` (the other sections), `api.py` (`herald serve`'s tokens and links),
`document.py` (herald.toml as one model), `messages.py` (pydantic's errors as Herald's
lines), `settings.py` (`Settings`, the environment, loading).
"""

from herald.config.api import (
    API_ROLES,
    DEFAULT_API_HOST,
    DEFAULT_API_PORT,
    MIN_API_TOKEN_CHARS,
    MIN_SECRET_KEY_CHARS,
    ApiSection,
    ApiToken,
    parse_api_tokens,
)
from herald.config.document import HeraldToml, known_options
from herald.config.routes import (
    DEFAULT_DIGEST,
    DEFAULT_DIGEST_MAX_ITEMS,
    DEFAULT_TEMPLATE,
    MAX_DIGEST_ITEMS,
    MODES,
    ON_AI_FAILURE,
    OPERATIONS,
    PRIORITIES,
    TEMPLATE_NAME,
    Route,
)
from herald.config.sections import (
    DEFAULT_AI_BATCH_SIZE,
    DEFAULT_AI_MAX_CONCURRENCY,
    DEFAULT_DELIVERY_LIMIT,
    DEFAULT_MAIL_BATCH_SIZE,
    DEFAULT_MAIL_FROM,
    DEFAULT_RETRIES,
    MAX_AI_BATCH_SIZE,
    MAX_AI_MAX_CONCURRENCY,
    MAX_BACKOFF_CEILING_MS,
    MAX_CHANGE_DEPTH_CEILING,
    MAX_MAIL_BATCH_SIZE,
    QUEUE_TYPES,
    AISettings,
    BreakerSettings,
    BrokerSettings,
    LimitSettings,
    MailSection,
    OrchestratorSettings,
    RetentionSettings,
    RetryPolicy,
)
from herald.config.settings import (
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    DEFAULT_OPENAI_BASE_URL,
    DEFAULT_SMTP_URL,
    Settings,
    load_settings,
    load_toml,
    settings_from_mapping,
)
from herald.config.values import parse_address
from herald.errors import ConfigError

__all__ = [
    "API_ROLES",
    "DEFAULT_AI_BATCH_SIZE",
    "DEFAULT_AI_MAX_CONCURRENCY",
    "DEFAULT_API_HOST",
    "DEFAULT_API_PORT",
    "DEFAULT_BROKER_URL",
    "DEFAULT_DATABASE_URL",
    "DEFAULT_DELIVERY_LIMIT",
    "DEFAULT_DIGEST",
    "DEFAULT_DIGEST_MAX_ITEMS",
    "DEFAULT_MAIL_BATCH_SIZE",
    "DEFAULT_MAIL_FROM",
    "DEFAULT_OPENAI_BASE_URL",
    "DEFAULT_RETRIES",
    "DEFAULT_SMTP_URL",
    "DEFAULT_TEMPLATE",
    "MAX_AI_BATCH_SIZE",
    "MAX_AI_MAX_CONCURRENCY",
    "MAX_BACKOFF_CEILING_MS",
    "MAX_CHANGE_DEPTH_CEILING",
    "MAX_DIGEST_ITEMS",
    "MAX_MAIL_BATCH_SIZE",
    "MIN_API_TOKEN_CHARS",
    "MIN_SECRET_KEY_CHARS",
    "MODES",
    "ON_AI_FAILURE",
    "OPERATIONS",
    "PRIORITIES",
    "QUEUE_TYPES",
    "TEMPLATE_NAME",
    "AISettings",
    "ApiSection",
    "ApiToken",
    "BreakerSettings",
    "BrokerSettings",
    "ConfigError",
    "HeraldToml",
    "LimitSettings",
    "MailSection",
    "OrchestratorSettings",
    "RetentionSettings",
    "RetryPolicy",
    "Route",
    "Settings",
    "known_options",
    "load_settings",
    "load_toml",
    "parse_address",
    "parse_api_tokens",
    "settings_from_mapping",
]
