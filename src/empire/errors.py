"""Errors classified by how to retry them.

Every failure that crosses a port is one of two kinds, so that the code which decides whether to
retry never has to parse messages or status codes:

    EmpireError
    ├── TemporaryError(delay)   retry later, after ``delay`` seconds when the peer said so
    │                           (HTTP 429/5xx, timeouts, connection refused, lock conflicts)
    └── PermanentError          retrying cannot help; report it and stop
        ├── ConfigError         bad settings, policy or CLI input (names the field path)
        └── NotFoundError       a referenced object does not exist

The state database's failures are both, with a `DbFailure` reason (`StateUnavailable` is a
TemporaryError, `StateBroken` a PermanentError; `empire.state.failures` classifies the driver's
exceptions): a closed set, because the reason is a metric label, the `/readyz` answer and an
alert's text.

Adapters raise these; only adapters retry (the pure core never does).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "STICKY",
    "ConfigError",
    "DbFailure",
    "EmpireError",
    "NotFoundError",
    "PermanentError",
    "StateBroken",
    "StateDbError",
    "StateUnavailable",
    "TemporaryError",
]


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


class DbFailure(StrEnum):
    missing = "missing"  # the SQLite file is gone (or unreadable); the PostgreSQL database does not exist
    replaced = "replaced"  # another file now sits at the SQLite path: restart to use it
    read_only = "read_only"  # writes refused (file mode, read-only filesystem, a standby server)
    disk_full = "disk_full"
    io_error = "io_error"
    corrupt = "corrupt"  # pages that do not parse: `empire db verify`, then restore
    busy = "busy"  # another writer held the lock past the busy timeout
    unreachable = "unreachable"  # connection refused, lost, timed out; the server shutting down
    auth = "auth"  # login or permission refused
    schema = "schema"  # tables missing: not an empire database at the newest revision
    error = "error"  # anything else the driver reported as a database failure


# Conditions that do not clear while the daemon runs: a corrupt file stays corrupt, and a replaced
# file is a different database from the one whose leases and intents the daemon holds in memory.
STICKY = frozenset({DbFailure.corrupt, DbFailure.replaced})


class StateDbError(EmpireError):
    """Mixin of the state database's classified errors: `reason` is a `DbFailure`.

    `reported` is set once the daemon's `StateHealth` has accounted for the error (it logs one line
    per state change), so the code where the error surfaces logs it at DEBUG, not once per retry."""

    reason: DbFailure
    reported: bool = False
    detail: str = ""  # the driver's own first line, for reports that already name the database


class StateUnavailable(StateDbError, TemporaryError):
    def __init__(self, message: str, reason: DbFailure, delay: float | None = None) -> None:
        TemporaryError.__init__(self, message, delay)
        self.reason = reason


class StateBroken(StateDbError, PermanentError):
    def __init__(self, message: str, reason: DbFailure) -> None:
        PermanentError.__init__(self, message)
        self.reason = reason
