"""Leader election: among several replicas of the daemon, exactly one acts.

Three mechanisms, chosen by `leader_for(settings)` from what the deployment already has, so no
extra infrastructure is needed:

* PostgreSQL state DB -> `pg_try_advisory_lock` on a *dedicated* connection. The lock lives as
  long as that session: if the leader dies or its connection drops, PostgreSQL releases it. The
  journal and the lock are in the same database, so whoever writes intents holds the lock.
* otherwise, Redis configured -> a lease: `SET key me NX PX ttl`, renewed with a compare-and-set
  Lua script (renew only if the value is still mine) and released the same way. The lease is
  trusted locally only until `renewed_at + ttl - margin` on the monotonic clock, so a replica that
  cannot reach Redis stops acting before another may take over.
* otherwise (embedded SQLite, one host) -> `fcntl.flock` on the data directory itself and on
  `<data_dir>/leader.lock` (what earlier versions lock, so a rolling update never has two
  leaders), released by the kernel when the process dies. Why the directory: a lock *file* can
  be deleted or replaced under its holder (`rm`, a tmp cleaner, a restore), and a second replica
  then locks a new file at the same path while the first still acts. The directory holds the
  SQLite database, so it is not replaced under a running daemon; and should either path stop
  naming what was locked (st_dev/st_ino of the path vs the open fd, checked every tick and before
  every action), the holder steps down, logs and journals why, and competes again next tick.

The loop calls `ensure()` once per tick and acts only when it returns True; the runner also checks
`is_leader` before every action. So a replica that loses the lease stops acting within one tick.
Between ticks the daemon's lease keeper (`empire.agent.daemon`) calls `ensure()` every
`EMPIRE_LEADER__RENEW_EVERY` seconds (5): the leader renews its lease well inside its lifetime
(a 15 s lease renewed only by 15 s ticks would lapse between them), and a standby notices a dead
leader within seconds and wakes its loop, instead of a whole tick later.
A lost leadership is journaled (`leader_lost` in the audit table, with `reason`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import anyio

from empire.errors import ConfigError

__all__ = ["AlwaysLeader", "FileLeader", "PostgresLeader", "RedisLeader", "leader_for"]

logger = logging.getLogger(__name__)
LOCK_KEY = 0x656D_7031  # "emp1": the advisory lock id of the acting replica


class _Base(ABC):
    name = "base"

    def __init__(self) -> None:
        self._leader = False
        self.reason = ""  # why leadership last changed, for the journal
        self._lock: anyio.Lock | None = None

    async def ensure(self) -> bool:
        """Acquire or renew; True while this replica leads. Serialized: the daemon's lease keeper
        and the loop's tick both call it, and one PostgreSQL session runs one query at a time."""
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            return await self._ensure()

    @abstractmethod
    async def _ensure(self) -> bool:
        """Acquire or renew once (each backend's own mechanism); True while this replica leads."""

    @property
    def is_leader(self) -> bool:
        return self._leader

    def _set(self, value: bool, detail: str = "") -> bool:
        if value != self._leader:
            log = logger.info if value else logger.warning
            log("leadership (%s) %s%s", self.name, "acquired" if value else "lost", f": {detail}" if detail else "")
            self.reason = detail
        self._leader = value
        return value


class AlwaysLeader(_Base):
    """A single replica by construction (tests, the backtest)."""

    name = "single"

    async def _ensure(self) -> bool:
        return self._set(True)

    async def release(self) -> None:
        self._leader = False


class FileLeader(_Base):
    """`flock` on `directory` and on `directory/leader.lock`; see the module docstring for why both,
    and why their identity is checked while held."""

    name = "file"

    def __init__(self, directory: str | Path, lock_name: str = "leader.lock") -> None:
        super().__init__()
        self.directory = Path(directory)
        self.path = self.directory / lock_name
        self._held: list[tuple[Path, int]] = []  # (path, open fd holding its flock)

    def _changed(self) -> str | None:
        """How a locked path stopped naming the object this process locked, or None."""
        for path, fd in self._held:
            try:
                now = os.stat(path)
            except FileNotFoundError:
                return f"{path} was deleted"
            except OSError as exc:
                return f"{path} cannot be checked ({exc.strerror})"
            held = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
                return f"{path} was replaced"
        return None

    @property
    def is_leader(self) -> bool:
        return self._leader and self._changed() is None

    async def _ensure(self) -> bool:
        if self._held:
            changed = self._changed()
            if changed is None:
                return self._set(True)
            self._unlock()
            return self._set(False, f"{changed} while this replica held the lock; stepping down, "
                                    "since another replica may now hold a lock of its own")  # fmt: skip
        # the directory first: a standby that cannot have it never touches the lock file
        for path, flags in ((self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)),
                            (self.path, os.O_RDWR | os.O_CREAT)):  # fmt: skip
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._held.append((path, os.open(path, flags, 0o644)))
            except OSError as exc:
                self._unlock()
                raise ConfigError(f"cannot open the leader lock {path}: {exc}") from None
            try:
                fcntl.flock(self._held[-1][1], fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._unlock()
                return self._set(False, "the lock is held by another replica")
            except OSError as exc:  # e.g. a file system without flock: say so, never idle silently
                self._unlock()
                raise ConfigError(f"cannot lock {path} for leader election: {exc.strerror}") from None
        if self._changed() is not None:  # deleted or replaced between open() and flock(): try next tick
            self._unlock()
            return self._set(False)
        fd = self._held[1][1]
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return self._set(True)

    def _unlock(self) -> None:
        """Close every fd (closing releases its flock)."""
        held, self._held = self._held, []
        for _, fd in held:
            with contextlib.suppress(OSError):
                os.close(fd)

    async def release(self) -> None:
        self._unlock()
        self._leader = False


class PostgresLeader(_Base):
    name = "postgres"

    def __init__(self, url: str, key: int = LOCK_KEY) -> None:
        super().__init__()
        self.url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        self.key = key
        self._conn: Any = None

    async def _ensure(self) -> bool:
        import asyncpg

        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.url, timeout=5)
                self._set(False, "new session")
            if self._leader:  # still ours? (the session may have been terminated server-side)
                held = await self._conn.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                    "AND objid = $1 AND granted", self.key & 0xFFFFFFFF, timeout=5,
                )  # fmt: skip
                return self._set(bool(held), "" if held else "lock no longer held")
            got = await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", self.key, timeout=5)
            return self._set(bool(got))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            await self._drop()
            return self._set(False, f"database unreachable: {type(exc).__name__}")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already broken
                conn.terminate()

    async def release(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            try:
                await self._conn.execute("SELECT pg_advisory_unlock($1)", self.key)
                await self._conn.close(timeout=5)
            except Exception:
                await self._drop()
        self._conn = None
        self._leader = False


_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLeader(_Base):
    name = "redis"

    def __init__(self, url: str, identity: str, ttl: float = 15.0, key: str = "empire:leader", client: Any = None):
        super().__init__()
        self.url, self.identity, self.ttl, self.key = url, identity, ttl, key
        self._client = client
        self._valid_until = 0.0

    def _redis(self) -> Any:
        if self._client is None:
            from empire.state.redis import connect_redis

            self._client = connect_redis(self.url, max_connections=4, wait=5.0, socket_timeout=5,
                                         socket_connect_timeout=5)  # fmt: skip
        return self._client

    @property
    def is_leader(self) -> bool:
        return self._leader and time.monotonic() < self._valid_until

    async def _ensure(self) -> bool:
        from redis.exceptions import RedisError

        ms = int(self.ttl * 1000)
        started = time.monotonic()
        try:
            r = self._redis()
            if self._leader:
                ok = bool(await r.eval(_RENEW, 1, self.key, self.identity, ms))
            else:
                ok = bool(await r.set(self.key, self.identity, nx=True, px=ms))
        except (RedisError, OSError) as exc:
            if time.monotonic() >= self._valid_until:
                return self._set(False, f"redis unreachable: {type(exc).__name__}")
            return self.is_leader  # still inside the lease we hold
        if ok:
            self._valid_until = started + self.ttl * 0.8  # margin for clock drift between us and Redis
        return self._set(ok, "" if ok else "lease held by another replica")

    async def release(self) -> None:
        if self._client is not None:
            try:
                if self._leader:
                    await self._client.eval(_RELEASE, 1, self.key, self.identity)
                await self._client.aclose()
                await self._client.connection_pool.disconnect()
            except Exception as exc:
                logger.debug("redis lease release failed: %s", exc)
            self._client = None
        self._leader = False
        self._valid_until = 0.0


def leader_for(settings: Any) -> _Base:
    """PostgreSQL advisory lock when the state DB is PostgreSQL; else a Redis lease when Redis is
    configured; else a file lock on the data directory (next to the SQLite database)."""
    url = settings.database_url_value
    if url.startswith("postgresql"):
        return PostgresLeader(url)
    if settings.redis_url is not None:
        return RedisLeader(settings.redis_url.get_secret_value(), settings.replica_id, settings.leader.lease_duration)
    return FileLeader(settings.data_dir)
