"""Errors classified by how to retry them.

Every failure that crosses a port is one of two kinds, so that the code which decides whether to
retry never has to parse messages or status codes:

    EmpireError
    ├── TemporaryError(delay)   retry later, after ``delay`` seconds when the peer said so
    │                           (HTTP 429/5xx, timeouts, connection refused, lock conflicts)
    └── PermanentError          retrying cannot help; report it and stop
        ├── ConfigError         bad settings, policy or CLI input (names the field path)
        └── NotFoundError       a referenced object does not exist

Adapters raise these; only adapters retry (the pure core never does).
"""

from __future__ import annotations

__all__ = ["ConfigError", "EmpireError", "NotFoundError", "PermanentError", "TemporaryError"]


class EmpireError(Exception):
    """Base of every error empire raises on purpose."""


class TemporaryError(EmpireError):
    """A failure that may succeed if tried again later.

    ``delay`` is the wait the peer asked for (``Retry-After``), or ``None`` to let the caller's
    backoff decide.
    """

    def __init__(self, message: str, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(EmpireError):
    """A failure that will recur on retry: bad input, missing permission, unknown object."""


class ConfigError(PermanentError):
    """Invalid settings, policy or command-line input. The message names the field path."""


class NotFoundError(PermanentError):
    """A referenced object (target, job, content object, file) does not exist."""
