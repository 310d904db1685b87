"""Executors for `BackupDb` and `PruneBackup`: write a snapshot into a tier, delete an expired one.

Order of writes, so a crash at any point leaves something the read-back can settle: the artifact,
then its manifest (the commit marker), then the catalog row. `read_back` of an unfinished backup
intent finds the manifest (the backup completed: catalogued now, `applied`) or not (whatever was
written is deleted, `reconciled`: the next check takes a new one, since the slot is still empty).
A prune deletes the manifest first, so a half-pruned backup is never mistaken for a complete one.

One snapshot serves every class due in the same run (at midnight on the 1st: hourly, daily and
monthly): `Snapshots.session()` takes it on first use and deletes the scratch file at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import anyio
import anyio.to_thread

from empire.agent.backup.manifest import MANIFEST_SUFFIX, Manifest
from empire.agent.backup.planning import BackupEntry
from empire.agent.backup.ports import BackupCatalog, Snapshotter
from empire.agent.ports import Clock, StorageBackend
from empire.agent.records import ActionRecord
from empire.agent.types import Action, BackupDb, Outcome, OutcomeStatus, PruneBackup, ReadBack
from empire.errors import NotFoundError, PermanentError, TemporaryError

__all__ = ["BackupExecutor", "PruneExecutor", "Snapshots"]

logger = logging.getLogger(__name__)
CHUNK = 1024 * 1024


class Snapshots:
    """At most one snapshot of the state database per backup run, shared by the classes due."""

    def __init__(self, take: Snapshotter, scratch: Path) -> None:
        self.take = take
        self.scratch = scratch
        self._now: datetime | None = None
        self._taken: tuple[Path, Manifest] | None = None

    @contextlib.asynccontextmanager
    async def session(self, now: datetime) -> AsyncIterator[None]:
        self._now, self._taken = now, None
        try:
            yield
        finally:
            if self._taken is not None:
                await anyio.to_thread.run_sync(lambda p=self._taken[0]: p.unlink(missing_ok=True))
            self._now, self._taken = None, None

    async def get(self, name: str) -> tuple[Path, Manifest]:
        if self._now is None:
            raise PermanentError("a backup runs inside a snapshot session (the scheduled job opens one)")
        if self._taken is None:
            out = self.scratch / name
            self._taken = (out, await self.take(out, self._now, {}))
        return self._taken


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    f = await anyio.open_file(path, "rb")
    try:
        while chunk := await f.read(CHUNK):
            yield chunk
    finally:
        await f.aclose()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _read_all(backend: StorageBackend, tier: str, location: str, limit: int = 1024 * 1024) -> bytes:
    out = bytearray()
    async for chunk in backend.read(tier, location):
        out += chunk
        if len(out) > limit:
            raise PermanentError(f"{tier}:{location} is larger than a manifest can be")
    return bytes(out)


def _entry(action: BackupDb | dict, m: Manifest) -> BackupEntry:
    p = action.params() if isinstance(action, BackupDb) else action
    return BackupEntry(cls=p["class"], name=p["name"], slot=p["slot"], tier=p["tier"], location=p["location"],
                       size=m.size, checksum=m.checksum, created_at=m.created_at)  # fmt: skip


class BackupExecutor:
    def __init__(self, backend: StorageBackend, catalog: BackupCatalog, snapshots: Snapshots) -> None:
        self.backend, self.catalog, self.snapshots = backend, catalog, snapshots

    async def execute(self, action: Action) -> Outcome:
        assert isinstance(action, BackupDb)
        path, snap = await self.snapshots.get(action.name)
        manifest = dataclasses.replace(snap, name=action.name, labels={"class": action.cls, "slot": action.slot})
        size, checksum = await self.backend.put(action.tier, action.location, _chunks(path))
        if (size, checksum) != (manifest.size, manifest.checksum):
            await self.backend.delete(action.tier, action.location)
            raise TemporaryError(f"{action.tier}:{action.location} stored {size:,} bytes {checksum[:19]}..., "
                                 f"the snapshot is {manifest.size:,} bytes {manifest.checksum[:19]}...")  # fmt: skip
        await self.backend.put(action.tier, action.location + MANIFEST_SUFFIX, _one(manifest.to_json().encode()))
        await self.catalog.add(_entry(action, manifest))
        return Outcome(OutcomeStatus.applied, state={"size": size, "checksum": checksum, "seconds": manifest.seconds,
                                                     "rows": manifest.total_rows})  # fmt: skip

    async def read_back(self, record: ActionRecord) -> ReadBack:
        p = record.params
        for e in await self.catalog.entries(include_deleted=True):
            if (e.cls, e.name) == (p["class"], p["name"]):
                return ReadBack(True, {"size": e.size}, "catalogued")
        try:
            text = await _read_all(self.backend, p["tier"], p["location"] + MANIFEST_SUFFIX)
        except NotFoundError:
            await self.backend.delete(p["tier"], p["location"])  # what an interrupted run left
            return ReadBack(False, note="no manifest: the backup did not complete; the next check takes another")
        manifest = Manifest.from_json(text, f"{p['tier']}:{p['location']}{MANIFEST_SUFFIX}")
        await self.catalog.add(_entry(p, manifest))
        return ReadBack(True, {"size": manifest.size}, "manifest found: catalogued")


class PruneExecutor:
    def __init__(self, backend: StorageBackend, catalog: BackupCatalog, clock: Clock) -> None:
        self.backend, self.catalog, self.clock = backend, catalog, clock

    async def execute(self, action: Action) -> Outcome:
        assert isinstance(action, PruneBackup)
        await self.backend.delete(action.tier, action.location + MANIFEST_SUFFIX)
        existed = await self.backend.delete(action.tier, action.location)
        await self.catalog.mark_deleted(action.cls, action.name, self.clock.now())
        return Outcome(OutcomeStatus.applied if existed else OutcomeStatus.unchanged)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        p = record.params
        if await self.backend.exists(p["tier"], p["location"] + MANIFEST_SUFFIX):
            return ReadBack(False, note="still there; retention deletes it at the next check")
        await self.backend.delete(p["tier"], p["location"])
        await self.catalog.mark_deleted(p["class"], p["name"], self.clock.now())
        return ReadBack(True, note="deleted")
