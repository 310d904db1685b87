"""Publishing results: fetch the bytes, run the compliance gate, store them as a content object.

`ContentSink` is the small port between generation and storage: `publish(object_id, data, meta)`
stores the bytes in the hot tier and records the object in `content_objects` (where the tiering
area takes over). `StorageContentSink` writes through any tiering `StorageBackend`;
`DirectoryContentSink` is the same over a plain directory, for the embedded default and tests.

Publishing is idempotent, because a crash between publishing and recording the job's success
makes the job run its last step again: the object id derives from the job's idempotency key, the
bytes are written atomically under that id, and the row is inserted only if it is not there.
Quarantined results are stored too (status `quarantined`), so they can be reviewed, but they are
not published.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import anyio
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from empire.agent.pools.compliance import check_compliance
from empire.agent.pools.jobs import Job
from empire.agent.pools.providers.base import JobProvider, PollResult
from empire.agent.ports import Clock, StorageBackend
from empire.policies.generation import CompliancePolicy
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["ContentMeta", "ContentPublisher", "ContentSink", "DirectoryContentSink", "StorageContentSink", "object_id"]

RECENT = 500  # releases per persona the near-duplicate check compares against


def object_id(idempotency_key: str) -> str:
    return "trk-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class ContentMeta:
    persona: str | None
    title: str | None
    status: str  # active | quarantined
    created_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)


class ContentSink(Protocol):
    async def publish(self, object_id: str, data: bytes, meta: ContentMeta) -> None: ...


class StorageContentSink:
    """Bytes into a storage backend's tier; the object's row into `content_objects`."""

    def __init__(self, db: Database, backend: StorageBackend, tier: str = "hot") -> None:
        self.db = db
        self.backend = backend
        self.tier = tier

    async def publish(self, object_id: str, data: bytes, meta: ContentMeta) -> None:
        location = self.backend.location_for(object_id)

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        size, checksum = await self.backend.put(self.tier, location, chunks())
        row = {
            "id": object_id, "size": size, "checksum": checksum, "tier": self.tier, "location": location,
            "persona": meta.persona, "title": meta.title, "status": meta.status, "created_at": meta.created_at,
            "tier_since": meta.created_at, "access_score": 0.0, "revenue": 0.0, "meta": meta.extra,
        }  # fmt: skip
        ins = (pg_insert if self.db.dialect == "postgresql" else sqlite_insert)(t.content_objects).values(**row)
        async with self.db.begin() as conn:
            await conn.execute(ins.on_conflict_do_nothing(index_elements=["id"]))


class _Directory:
    """The two `StorageBackend` calls a sink needs, over one directory per tier."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def location_for(self, object_id: str) -> str:
        return f"{object_id[-2:]}/{object_id}.wav"

    async def put(self, tier: str, location: str, chunks: AsyncIterator[bytes]) -> tuple[int, str]:
        data = b"".join([c async for c in chunks])
        path = self.root / tier / location

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".partial")
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)

        await anyio.to_thread.run_sync(write)
        return len(data), "sha256:" + hashlib.sha256(data).hexdigest()


class DirectoryContentSink(StorageContentSink):
    def __init__(self, db: Database, root: Path, tier: str = "hot") -> None:
        super().__init__(db, _Directory(root), tier)  # type: ignore[arg-type]


class ContentPublisher:
    """The dispatcher's `Publisher`: fetch, gate, store."""

    def __init__(
        self,
        db: Database,
        sink: ContentSink,
        compliance: Callable[[], CompliancePolicy],
        clock: Clock,
        on_content: Callable[[str | None, bool], None] | None = None,
    ) -> None:
        self.db = db
        self.sink = sink
        self.compliance = compliance
        self.clock = clock
        self.on_content = on_content
        self._titles: dict[str, list[str]] = {}
        self._prompts: dict[str, list[str]] = {}

    async def _recent(self, persona: str) -> tuple[list[str], list[str]]:
        if persona not in self._titles:
            c = t.content_objects.c
            q = (
                select(c.title, c.meta)
                .where(c.persona == persona, c.status == "active")
                .order_by(c.created_at.desc())
                .limit(RECENT)
            )
            async with self.db.connect() as conn:
                rows = (await conn.execute(q)).all()
            self._titles[persona] = [r.title for r in rows if r.title][::-1]
            self._prompts[persona] = [str((r.meta or {}).get("prompt", "")) for r in rows][::-1]
        return self._titles[persona], self._prompts[persona]

    async def publish(self, job: Job, provider: JobProvider, account: str, result: PollResult) -> dict[str, Any]:
        data = await provider.fetch(account, result)
        persona = job.persona or str(job.request.get("persona") or "") or None
        prompt = str(job.request.get("prompt", ""))
        meta = {"persona": persona, "genre": job.request.get("genre"), **result.meta}
        titles, prompts = await self._recent(persona or "")
        verdict = check_compliance(meta, prompt, self.compliance(), titles, prompts)
        oid = object_id(job.idempotency_key)
        status = "active" if verdict.passed else "quarantined"
        extra = {**meta, "prompt": prompt, "job_key": job.idempotency_key, "provider": job.provider,
                 "account": account, "compliance": verdict.as_dict()}  # fmt: skip
        await self.sink.publish(oid, data, ContentMeta(persona, meta.get("title"), status, self.clock.now(), extra))
        if verdict.passed:
            for lst, item in ((titles, str(meta.get("title") or "")), (prompts, prompt)):
                lst.append(item)
                del lst[:-RECENT]
        if self.on_content is not None:
            self.on_content(persona, not verdict.passed)
        return {"object_id": oid, "content_status": status, "compliance": verdict.as_dict()}
