"""The state database: one async engine for SQLite (embedded default) and PostgreSQL (asyncpg).

`Database.open()` connects, classifies failures (`empire.state.failures`: an unreachable server
is temporary, a bad URL, a refused login or a corrupt file permanent, each with a `DbFailure`
reason) and by default migrates the schema to the newest Alembic revision, so the embedded default
needs no set-up step. On PostgreSQL the migration runs under an advisory lock, so replicas starting
together migrate once. SQLite runs in WAL mode with a busy timeout, which lets the CLI read while
the daemon writes.

Who may create a database: only `open(create=True)` (`empire db upgrade`, the daemon's start, the
commands that add state), and only once, before the engine connects. The engine itself opens
SQLite with `mode=rw`, so a file deleted under a running daemon is an error ("missing"), never a
new empty database that every query then finds without tables. The file's identity (device,
inode) is taken at open and checked on every new connection: a different file at the same path
(a restore, another process's `db upgrade`) is "replaced", not silently adopted, because the
daemon's in-memory leases and intents belong to the old one.

`open_readonly()` is for the commands that only read: nothing is created or migrated, and the
connection itself refuses writes (SQLite `query_only`, PostgreSQL read-only transactions).

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
for the write lock as a `StateUnavailable(busy)`, and `close()` waits at most `grace` seconds for
units still in flight before disposing the engine.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from empire.config.urls import mask_url
from empire.errors import ConfigError, DbFailure, EmpireError, StateBroken, StateDbError
from empire.state.failures import classify_db_error, diagnose

if TYPE_CHECKING:
    from empire.state.health import StateHealth

__all__ = ["Database", "classify_db_error"]

logger = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 0x656D_7069  # "empi": pg_advisory_lock key for migrations
# Seconds a SQLite statement waits for another writer's lock before failing ("database is
# locked", a TemporaryError its caller retries). It also bounds how long a shielded unit of work
# can delay a shutdown, so it stays well under the shutdown deadline (EMPIRE_SHUTDOWN_TIMEOUT).
SQLITE_BUSY_TIMEOUT = 10.0
_HOST = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
# What reaching the database can raise before SQLAlchemy wraps it (asyncpg's connect: refused, DNS).
_CONNECT_ERRORS = (DBAPIError, OSError, ConnectionError, TimeoutError)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for PostgreSQL, `:memory:` and `file:` URIs."""
    if not url.startswith("sqlite"):
        return None
    try:
        db = make_url(url).database
    except ArgumentError:
        return None
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def _check_postgres_url(url: URL, shown: str) -> None:
    """A malformed URL is a configuration error (exit 2), not "unreachable, try again" (exit 3).
    The host is never printed: with an unencoded '@' in the password, part of it lands there."""
    host = url.host
    if host is not None and host != "":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not _HOST.match(host):
                raise ConfigError(
                    f"invalid database URL {shown}: the host is not a valid host name (an '@' in the "
                    "user name or password must be percent-encoded as %40)"
                ) from None
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigError(f"invalid database URL {shown}: port {url.port} is not in 1-65535")


class Database:
    """An async engine plus the dialect facts the repositories need.

    `health`, when the daemon sets it, hears of every failure (`StateHealth.failed`) so that
    readiness, metrics and the hold on actions follow the database without each caller's help."""

    def __init__(self, url: str, *, echo: bool = False, readonly: bool = False) -> None:
        self.url = url
        self.readonly = readonly
        self.path = sqlite_path(url)
        self.health: StateHealth | None = None
        self._identity: tuple[int, int] | None = None
        self._pin: int | None = None
        shown = mask_url(url)
        try:
            parsed = make_url(url)
            if url.startswith("sqlite"):
                if self.path is not None:  # never create: see the module docstring
                    parsed = parsed.set(database=f"file:{quote(str(self.path))}", query={"mode": "rw", "uri": "true"})
                self.engine: AsyncEngine = create_async_engine(
                    parsed, echo=echo, poolclass=NullPool, connect_args={"timeout": SQLITE_BUSY_TIMEOUT}
                )
                event.listen(self.engine.sync_engine, "connect", self._sqlite_connect)
                event.listen(self.engine.sync_engine, "begin", self._sqlite_begin)
            else:
                _check_postgres_url(parsed, shown)
                args: dict[str, Any] = {}
                if readonly:
                    args["server_settings"] = {"default_transaction_read_only": "on"}
                self.engine = create_async_engine(
                    parsed, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=args
                )
        except (ArgumentError, ImportError, ValueError) as exc:
            raise ConfigError(f"invalid database URL {shown}: {exc}") from None
        self.dialect = self.engine.dialect.name  # "sqlite" | "postgresql"
        self._in_flight = 0  # units of work running now (close() waits for them)
        self._idle: anyio.Event | None = None  # set when _in_flight drops to 0 while close() waits

    def describe(self) -> str:
        """The database for messages: its file, or its URL with the password masked."""
        return str(self.path) if self.path is not None else mask_url(self.url)

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True, create: bool = True) -> Database:
        """Connect, creating the SQLite file when `create` (else a missing one is
        `StateBroken(missing)`, saying how to create it), and migrate when `migrate`."""
        db = cls(url)
        try:
            if db.path is not None:
                db._create_or_find(create)
            await db.ping()
            if migrate:
                await db.upgrade()
        except BaseException:
            await db.close()
            raise
        return db

    @classmethod
    async def open_readonly(cls, url: str, *, current: bool = True) -> Database:
        """Open for reading only: nothing is created or migrated, and the connection refuses writes.

        `current`: the schema must be at the newest revision this empire knows (reading an older
        one would fail on a missing column, and migrating is a write): otherwise `StateBroken(schema)`
        saying to run `empire db upgrade`."""
        db = cls(url, readonly=True)
        try:
            if db.path is not None:
                db._create_or_find(False)
            await db.ping()
            if current:
                from empire.state.migrations import head_revision

                rev, head = await db.current_revision(), head_revision()
                if rev != head:
                    found = f"is at schema revision {rev}" if rev else "has no empire schema"
                    raise StateBroken(
                        f"state database {db.describe()} {found}, this empire needs {head}: "
                        "run 'empire db upgrade'", DbFailure.schema,
                    )  # fmt: skip
        except BaseException:
            await db.close()
            raise
        return db

    def _create_or_find(self, create: bool) -> None:
        assert self.path is not None
        if not self.path.exists():
            if not create:
                raise StateBroken(
                    f"no state database at {self.path}: create it with 'empire db upgrade' "
                    "(or start 'empire run', which creates it)",
                    DbFailure.missing,
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                sqlite3.connect(self.path).close()  # the one place a database file is created
            except (OSError, sqlite3.Error) as exc:
                raise ConfigError(f"cannot create the state database {self.path}: {exc}") from None
        # Hold the file open while in use: its inode cannot be reused by a file created at the same
        # path, so "same (device, inode)" really means "same file". (Closed in `close()`, after the
        # engine's connections: closing a descriptor drops this process's POSIX locks on the file.)
        try:
            self._pin = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise StateBroken(f"state database {self.path} is unreadable: {exc}", DbFailure.missing) from None
        st = os.fstat(self._pin)
        self._identity = (st.st_dev, st.st_ino)

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
        if self._pin is not None:
            os.close(self._pin)
            self._pin = None

    async def ping(self) -> None:
        try:
            async with self.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except EmpireError:
            raise
        except Exception as exc:  # what the driver raises before a connection exists (a bad URL option)
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> Exception:
        """Classify a driver failure, tell `health`, and return the error to raise."""
        err = classify_db_error(exc, self.url)
        if isinstance(err, StateBroken) and err.reason == DbFailure.missing and self._identity is not None:
            try:
                self.check_identity()  # its message says what happened and what to do
            except StateBroken as found:
                err = found
        if self.health is not None and isinstance(err, StateDbError):
            self.health.failed(err)
        return err

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; database failures surface as `StateUnavailable` / `StateBroken`. Shielded
        from cancellation (module docstring): it commits or rolls back, never stops half-way."""
        async with self._unit(self.engine.begin()) as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads (no transaction of its own); shielded like `begin()`."""
        async with self._unit(self.engine.connect()) as conn:
            yield conn

    @asynccontextmanager
    async def _unit(self, opening: Any) -> AsyncIterator[AsyncConnection]:
        """Shield, count and classify one unit of work. A driver error (DBAPIError) is classified
        wherever it happens; a bare OSError or timeout only while connecting: once connected, those
        come from the caller's own work inside the transaction (a file copy) and pass unchanged."""
        with anyio.CancelScope(shield=True):
            self._in_flight += 1
            entered = False
            try:
                async with opening as conn:
                    entered = True
                    yield conn
            except StateDbError as exc:  # the identity check, raised while connecting
                if self.health is not None:
                    self.health.failed(exc)
                raise
            except _CONNECT_ERRORS as exc:
                if (entered and not isinstance(exc, DBAPIError)) or diagnose(exc) is None:
                    raise
                raise self._failed(exc) from exc
            finally:
                self._in_flight -= 1
                if not self._in_flight and self._idle is not None:
                    self._idle.set()

    async def probe(self) -> None:
        """A real committed write that changes nothing: the schema-revision row rewritten with itself.

        Why this statement: every empire database has exactly that row, and a write is what the
        daemon needs (reads still work on a read-only file or a full disk). On SQLite each
        transaction opens a new connection, which also checks the file's identity."""
        async with self.begin() as conn:
            done = await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
        if done.rowcount != 1:
            err = StateBroken(f"state database {self.describe()} has no schema revision: run 'empire db upgrade'",
                              DbFailure.schema)  # fmt: skip
            if self.health is not None:
                self.health.failed(err)
            raise err

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

    def check_identity(self) -> None:
        """Raise `StateBroken` when the SQLite file is gone or another file took its place."""
        if self.path is None or self._identity is None:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise StateBroken(
                f"state database {self.path} is missing (deleted while in use); restore it, or restart "
                "'empire run' to start a new, empty one", DbFailure.missing,
            ) from None  # fmt: skip
        except OSError as exc:
            raise StateBroken(f"state database {self.path} is unreadable: {exc}", DbFailure.missing) from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise StateBroken(
                f"state database {self.path} was replaced by another file while in use; restart "
                "'empire run' to use the new file", DbFailure.replaced,
            )  # fmt: skip

    def _sqlite_connect(self, dbapi_conn: Any, _record: Any) -> None:
        self.check_identity()
        # Let SQLAlchemy own transactions (pysqlite's implicit BEGIN would defeat BEGIN IMMEDIATE).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if self.readonly:
            cur.execute("PRAGMA query_only=ON")  # even a journal-mode change would be a write
        else:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    def _sqlite_begin(self, conn: Any) -> None:
        # BEGIN IMMEDIATE takes the write lock up front: two writers serialize instead of failing
        # with "database is locked" when a read transaction upgrades to a write. This is SQLite's
        # equivalent of SELECT ... FOR UPDATE for the job queue's claim. A read-only connection
        # takes no write lock (it would wait behind the daemon's writes for nothing).
        conn.exec_driver_sql("BEGIN" if self.readonly else "BEGIN IMMEDIATE")
