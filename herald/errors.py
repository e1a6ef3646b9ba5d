"""The two kinds of failure every Herald step distinguishes.

Retry middleware and the job ledger only need to know whether trying again can
help: a ``PermanentError`` (bad data, SMTP 5xx) is marked failed at once with
its message as the reason operators see; a ``TransientError`` (SMTP 4xx,
timeouts, refused connections) is retried with backoff.
"""


class HeraldError(Exception):
    """Base of every error Herald raises on purpose."""


class PermanentError(HeraldError):
    """Trying again cannot help; ``str()`` is the reason shown to operators."""


class TransientError(HeraldError):
    """The same attempt may succeed later; retried with backoff."""


class ConfigError(ValueError):
    """Configuration Herald refuses to start with; the message names the culprit.

    Defined here (and re-exported by `herald.config`) so that `herald.environment`,
    which `herald.config` reads, can raise it without importing `herald.config`.
    """
