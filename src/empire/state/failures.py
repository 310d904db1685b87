"""What went wrong with the state database, in a closed set of reasons, and how to retry it.

Why a closed set: the reason is a metric label (`empire_state_db_failure{reason}`), the `/readyz`
and `/status` answer and the alert's text, so it must be one of a few words an operator can act
on, never a driver message. The driver's own words stay in the error message (first line only).

    EmpireError
    ├── TemporaryError
    │   └── StateUnavailable(reason)   unreachable, disk_full, io_error, busy, read_only (PostgreSQL
    │                                  failover): the same statement may work later
    └── PermanentError
        ├── ConfigError                a malformed URL, an option the driver refuses
        └── StateBroken(reason)        missing, replaced, corrupt, auth, schema, read_only (SQLite
                                       file): an operator must act (restore, chmod, db upgrade)

The error types (`DbFailure`, `StateDbError`, `StateUnavailable`, `StateBroken`) live in
`empire.errors`, so the loop and the areas can tell a database failure from their own without
importing this adapter; this module turns a driver's exception into one of them.

`diagnose()` reads SQLite's error names (`sqlite_errorname`) and PostgreSQL's SQLSTATE codes
rather than parsing messages where it can. Programming errors (a syntax error, a constraint the
caller relies on, such as the journal's unique idempotency key) are *not* database failures:
`diagnose()` returns None for them and they propagate unchanged.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, IntegrityError

from empire.config.urls import mask_url
from empire.errors import (
    ConfigError,
    DbFailure,
    PermanentError,
    StateBroken,
    StateDbError,
    StateUnavailable,
    TemporaryError,
)

__all__ = ["classify_db_error", "diagnose"]


_SQLITE = {
    "SQLITE_CANTOPEN": DbFailure.missing,
    "SQLITE_READONLY": DbFailure.read_only,
    "SQLITE_FULL": DbFailure.disk_full,
    "SQLITE_IOERR": DbFailure.io_error,
    "SQLITE_CORRUPT": DbFailure.corrupt,
    "SQLITE_NOTADB": DbFailure.corrupt,
    "SQLITE_BUSY": DbFailure.busy,
    "SQLITE_LOCKED": DbFailure.busy,
}
_PG_EXACT = {
    "3D000": DbFailure.missing,  # invalid_catalog_name: the database does not exist
    "25006": DbFailure.read_only,  # read_only_sql_transaction: a standby, or default_transaction_read_only
    "53100": DbFailure.disk_full,
    "42P01": DbFailure.schema,  # undefined_table
    "42703": DbFailure.schema,  # undefined_column
    "42501": DbFailure.auth,  # insufficient_privilege
    "XX001": DbFailure.corrupt,  # data_corrupted
    "XX002": DbFailure.corrupt,  # index_corrupted
    "58030": DbFailure.io_error,
}
_PG_CLASS = {"28": DbFailure.auth, "08": DbFailure.unreachable, "57": DbFailure.unreachable,
             "53": DbFailure.unreachable}  # fmt: skip
_TEMPORARY = frozenset({DbFailure.unreachable, DbFailure.disk_full, DbFailure.io_error, DbFailure.busy})


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc`, the DBAPI error inside it and the driver errors that caused that, outermost first."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 6:
        out.append(cur)
        cur = getattr(cur, "orig", None) or cur.__cause__
    return out


def diagnose(exc: BaseException) -> tuple[DbFailure, bool] | None:
    """(reason, temporary) for a database failure; None for a programming error or a constraint
    violation, which are the caller's business. `ConfigError`s are diagnosed by `classify_db_error`."""
    if isinstance(exc, StateDbError):
        return exc.reason, isinstance(exc, TemporaryError)
    if isinstance(exc, IntegrityError):
        return None
    chain = _chain(exc)
    for e in chain:
        name = getattr(e, "sqlite_errorname", None)
        if isinstance(name, str):  # SQLITE_READONLY_DBMOVED -> SQLITE_READONLY
            reason = _SQLITE.get("_".join(name.split("_")[:2]))
            if reason is None and ("no such table" in str(e) or "no such column" in str(e)):
                reason = DbFailure.schema
            if reason is None:
                return None if name == "SQLITE_ERROR" else (DbFailure.error, False)
            # A read-only SQLite file stays read-only until someone changes it (permanent);
            # PostgreSQL's read-only transactions (a failover in progress) pass: see below.
            return reason, reason in _TEMPORARY
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str) and len(state) == 5:
            reason = _PG_EXACT.get(state) or _PG_CLASS.get(state[:2])
            if reason is None:
                return None if state[:2] in ("42", "22", "23") else (DbFailure.error, False)
            return reason, reason in _TEMPORARY or reason == DbFailure.read_only
    if any(isinstance(e, OSError | ConnectionError | TimeoutError) for e in chain):
        return DbFailure.unreachable, True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or type(exc.orig).__name__ in ("InterfaceError", "ConnectionDoesNotExistError"):
            return DbFailure.unreachable, True
        return DbFailure.error, False
    return None


_HINT = {
    DbFailure.missing: "missing",
    DbFailure.replaced: "replaced under the running daemon",
    DbFailure.read_only: "read-only",
    DbFailure.disk_full: "full (no space left)",
    DbFailure.io_error: "failing to read or write (I/O error)",
    DbFailure.corrupt: "corrupt (run 'empire db verify')",
    DbFailure.busy: "locked by another writer",
    DbFailure.unreachable: "unreachable",
    DbFailure.auth: "refusing the login or permission",
    DbFailure.schema: "missing tables (run 'empire db upgrade')",
    DbFailure.error: "failing",
}


def _is_client_config(exc: BaseException) -> bool:
    """asyncpg's "this URL option is invalid" (e.g. `?sslmode=bogus`), and a connect() keyword it
    does not know (`?foo=bar`): the URL is wrong, no retry can help."""
    return any(type(e).__name__ == "ClientConfigurationError" or isinstance(e, TypeError) for e in _chain(exc))


def classify_db_error(exc: BaseException, url: str) -> Exception:
    """Map a driver exception onto the temporary/permanent split, with a `DbFailure` reason.

    The message names the database by its masked URL and keeps the driver's first line."""
    if isinstance(exc, StateDbError | ConfigError):
        return exc  # type: ignore[return-value]
    shown = url.split(":///", 1)[1] if url.startswith("sqlite") and ":///" in url else mask_url(url)
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig) or type(orig).__name__).splitlines()[0]
    if _is_client_config(exc):
        return ConfigError(f"invalid database URL {shown}: {detail}")
    found = diagnose(exc)
    if found is None:
        return PermanentError(f"database {shown}: {detail}")
    reason, temporary = found
    message = f"state database {shown} is {_HINT[reason]}: {detail}"
    err = StateUnavailable(message, reason) if temporary else StateBroken(message, reason)
    err.detail = detail
    return err
