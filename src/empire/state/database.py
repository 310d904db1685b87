"""The state database: one async engine for SQLite (embedded default) and PostgreSQL (asyncpg).

`Database.open()` connects, classifies connection failures (an unreachable server is a
`TemporaryError`, a bad URL or a refused login a `PermanentError`), and by default migrates the
schema to the newest Alembic revision, so the embedded default needs no set-up step. On
PostgreSQL the migration runs under an advisory lock, so replicas starting together migrate once.
SQLite runs in WAL mode with a busy timeout, which lets the CLI read while the daemon writes.

Cancellation (SIGTERM): every unit of work (`begin()`, `connect()`) is shielded from it, so a
transaction runs to its commit or rollback and its connection is closed normally; the cancel
takes effect at the caller's next await after the unit. Why: a cancel delivered while a statement
runs makes SQLAlchemy invalidate the connection and start a graceful close inside
`asyncio.shield`; anyio delivers the cancel again at the next await, so SQLAlchemy force-stops
aiosqlite's thread too, and the graceful close is left behind. If asyncio's shutdown then
cancels that close while the thread is still busy (a `BEGIN IMMEDIATE` waiting for the write
lock, a slow machine), aiosqlite 0.22 awaits a stop future the exited thread never resolves, and
`empire run` hung in `asyncio.run`'s `_cancel_all_tasks` after "stopped cleanly" (about 1 stop in
9 in CI). A shielded unit is bounded: SQLite's busy timeout (`SQLITE_BUSY_TIMEOUT`) ends a wait
for the write lock as a `TemporaryError`, and `close()` waits at most `grace` seconds for units
still in flight before disposing the engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import event, text
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from empire.config.urls import mask_url
from empire.errors import ConfigError, PermanentError, TemporaryError

__all__ = ["Database", "classify_db_error"]

logger = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 0x656D_7069  # "empi": pg_advisory_lock key for migrations
# Seconds a SQLite statement waits for another writer's lock before failing ("database is
# locked", a TemporaryError its caller retries). It also bounds how long a shielded unit of work
# can delay a shutdown, so it stays well under the shutdown deadline (EMPIRE_SHUTDOWN_TIMEOUT).
SQLITE_BUSY_TIMEOUT = 10.0


def classify_db_error(exc: BaseException, url: str) -> Exception:
    """Map a driver exception onto the temporary/permanent split."""
    shown = mask_url(url)
    text_ = str(getattr(exc, "orig", exc)) or type(exc).__name__
    lowered = text_.lower()
    if "password authentication failed" in lowered or ("does not exist" in lowered and "database" in lowered):
        return PermanentError(f"database {shown}: {text_.splitlines()[0]}")
    if isinstance(exc, OperationalError | InterfaceError | OSError | ConnectionError | TimeoutError):
        return TemporaryError(f"database {shown} unreachable: {text_.splitlines()[0]}")
    if isinstance(exc, DBAPIError) and getattr(exc, "connection_invalidated", False):
        return TemporaryError(f"database {shown}: connection lost: {text_.splitlines()[0]}")
    return PermanentError(f"database {shown}: {text_.splitlines()[0]}")


class Database:
    """An async engine plus the dialect facts the repositories need."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        try:
            if url.startswith("sqlite"):
                self._prepare_sqlite_path(url)
                self.engine: AsyncEngine = create_async_engine(
                    url, echo=echo, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT}
                )
                event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
                event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
            else:
                self.engine = create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)
        except (ArgumentError, ImportError, ValueError) as exc:
            raise ConfigError(f"invalid database URL {mask_url(url)}: {exc}") from None
        self.dialect = self.engine.dialect.name  # "sqlite" | "postgresql"
        self._in_flight = 0  # units of work running now (close() waits for them)
        self._idle: anyio.Event | None = None  # set when _in_flight drops to 0 while close() waits

    @staticmethod
    def _prepare_sqlite_path(url: str) -> None:
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the directory for {path}: {exc}") from None

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Database:
        db = cls(url)
        try:
            await db.ping()
            if migrate:
                await db.upgrade()
        except BaseException:
            await db.close()
            raise
        return db

    async def close(self, grace: float = SQLITE_BUSY_TIMEOUT + 5.0) -> None:
        """Dispose of the engine once the units of work in flight have finished (at most `grace`
        seconds: a unit is shielded from cancellation and bounded by the busy timeout, so this
        wait only ends early if the database itself hangs; then it is logged and closed anyway)."""
        if self._in_flight:
            self._idle = anyio.Event()
            with anyio.move_on_after(grace) as waited:
                await self._idle.wait()
            if waited.cancelled_caught:
                logger.warning("closing the state database with %d unit(s) of work still running after %gs",
                               self._in_flight, grace)  # fmt: skip
        await self.engine.dispose()

    async def ping(self) -> None:
        try:
            async with self.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (TemporaryError, PermanentError):
            raise
        except Exception as exc:
            raise classify_db_error(exc, self.url) from exc

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; driver failures surface as Temporary/PermanentError. Shielded from
        cancellation (module docstring): it commits or rolls back, never stops half-way."""
        async with self._unit(self.engine.begin()) as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (no transaction of its own); shielded like `begin()`."""
        async with self._unit(self.engine.connect()) as conn:
            yield conn

    @asynccontextmanager
    async def _unit(self, opening: Any) -> AsyncIterator[AsyncConnection]:
        with anyio.CancelScope(shield=True):
            self._in_flight += 1
            try:
                async with opening as conn:
                    yield conn
            except (OperationalError, InterfaceError, OSError, ConnectionError) as exc:
                raise classify_db_error(exc, self.url) from exc
            finally:
                self._in_flight -= 1
                if not self._in_flight and self._idle is not None:
                    self._idle.set()

    async def upgrade(self, revision: str = "head") -> None:
        from empire.state.migrations import run_upgrade

        async with self.begin() as conn:
            if self.dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_ID})
            await conn.run_sync(run_upgrade, revision)

    async def current_revision(self) -> str | None:
        from empire.state.migrations import current_revision

        async with self.connect() as conn:
            return await conn.run_sync(current_revision)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN would defeat BEGIN IMMEDIATE).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE takes the write lock up front: two writers serialize instead of failing
    # with "database is locked" when a read transaction upgrades to a write. This is SQLite's
    # equivalent of SELECT ... FOR UPDATE for the job queue's claim.
    conn.exec_driver_sql("BEGIN IMMEDIATE")
