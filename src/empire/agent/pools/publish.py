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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import anyio

from empire.agent.pools.compliance import check_compliance
from empire.agent.pools.jobs import Job, JobPriority, NewJob
from empire.agent.pools.providers.base import JobProvider, PollResult
from empire.agent.pools.revenue import PublishedTrack
from empire.agent.ports import Clock, StorageBackend
from empire.policies.generation import CompliancePolicy

__all__ = [
    "PUBLISH_PREFIX", "ContentCatalog", "ContentMeta", "ContentPublisher", "ContentSink", "DirectoryContentSink",
    "NewContent", "StorageContentSink", "object_id", "publication_jobs", "publication_key",
]  # fmt: skip

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


@dataclass(frozen=True)
class NewContent:
    """A generated track as it enters the content inventory (where tiering takes over)."""

    id: str
    size: int
    checksum: str
    tier: str
    location: str
    meta: ContentMeta


class ContentCatalog(Protocol):
    """Where published tracks are recorded (the `content_objects` table, shared with tiering).
    `empire.state.content.SqlContentCatalog` on the state DB; `memory.MemoryContentCatalog` the twin."""

    async def add(self, item: NewContent) -> None:
        """Record a new object; an id already there is left as it is (a retried publish)."""
        ...

    async def recent(self, persona: str, limit: int) -> list[tuple[str | None, dict[str, Any]]]:
        """(title, meta) of the persona's newest active objects, newest first."""
        ...

    async def published_since(self, since: datetime, personas: Sequence[str]) -> list[PublishedTrack]:
        """The personas' published (not quarantined) tracks created at or after `since`, with their
        revenue to date (the `RevenueSource` port the planner's `returns` spending reads)."""
        ...


class ContentSink(Protocol):
    async def publish(self, object_id: str, data: bytes, meta: ContentMeta) -> None: ...


class StorageContentSink:
    """Bytes into a storage backend's tier; the object's row into `content_objects`."""

    def __init__(self, catalog: ContentCatalog, backend: StorageBackend, tier: str = "hot") -> None:
        self.catalog = catalog
        self.backend = backend
        self.tier = tier

    async def publish(self, object_id: str, data: bytes, meta: ContentMeta) -> None:
        location = self.backend.location_for(object_id)

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        size, checksum = await self.backend.put(self.tier, location, chunks())
        await self.catalog.add(NewContent(object_id, size, checksum, self.tier, location, meta))


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
    def __init__(self, catalog: ContentCatalog, root: Path, tier: str = "hot") -> None:
        super().__init__(catalog, _Directory(root), tier)  # type: ignore[arg-type]


PUBLISH_PREFIX = "pub/"


def publication_key(object_id: str, platform: str) -> str:
    """One publish job per track and platform: its idempotency key, also sent to the platform."""
    return f"{PUBLISH_PREFIX}{object_id}/{platform}"


def publication_jobs(
    object_id: str, persona: str, title: object, platforms: Sequence[str], priority: JobPriority
) -> list[NewJob]:
    return [
        NewJob(publication_key(object_id, p), p, {"prompt": f"publish {object_id}", "persona": persona,
               "title": str(title or ""), "object_id": object_id, "providers": [p]}, persona, priority)
        for p in platforms
    ]  # fmt: skip


class ContentPublisher:
    """The dispatcher's `Publisher`: fetch, gate, store."""

    def __init__(
        self,
        catalog: ContentCatalog,
        sink: ContentSink,
        compliance: Callable[[], CompliancePolicy],
        clock: Clock,
        on_content: Callable[[str | None, bool], None] | None = None,
        *,
        enqueue: Callable[[Sequence[NewJob], datetime], Awaitable[int]] | None = None,
        platforms: Callable[[str], tuple[str, ...]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.sink = sink
        self.enqueue = enqueue  # the job queue's: publish jobs go through the same pools
        self.platforms = platforms  # persona -> the platforms its tracks go to (the policy's `platforms`)
        self.compliance = compliance
        self.clock = clock
        self.on_content = on_content
        self._titles: dict[str, list[str]] = {}
        self._prompts: dict[str, list[str]] = {}
        self._keys: dict[str, list[str]] = {}  # the job key of each, to recognise a retried publish

    async def _recent(self, persona: str) -> tuple[list[str], list[str]]:
        if persona not in self._titles:
            rows = await self.catalog.recent(persona, RECENT)
            self._titles[persona] = [title or "" for title, _ in rows][::-1]
            self._prompts[persona] = [str((meta or {}).get("prompt", "")) for _, meta in rows][::-1]
            self._keys[persona] = [str((meta or {}).get("job_key", "")) for _, meta in rows][::-1]
        return self._titles[persona], self._prompts[persona]

    async def publish(self, job: Job, provider: JobProvider, account: str, result: PollResult) -> dict[str, Any]:
        if job.idempotency_key.startswith(PUBLISH_PREFIX):  # a track went out on a platform: nothing to store
            return {"publication": {"platform": job.provider, "account": account, "url": result.result_url,
                                    "object_id": job.request.get("object_id")}}  # fmt: skip
        data = await provider.fetch(account, result)
        persona = job.persona or str(job.request.get("persona") or "") or None
        prompt = str(job.request.get("prompt", ""))
        meta = {"persona": persona, "genre": job.request.get("genre"), **result.meta}
        titles, prompts = await self._recent(persona or "")
        keys = self._keys.get(persona or "", [])
        # a retried publish (a crash after storing, before the job was recorded) must not find its
        # own first run a near duplicate: the others only
        others = [i for i, k in enumerate(keys) if k != job.idempotency_key] if job.idempotency_key in keys else None
        verdict = check_compliance(meta, prompt, self.compliance(),
                                   [t for t in titles if t] if others is None else [titles[i] for i in others if titles[i]],
                                   prompts if others is None else [prompts[i] for i in others])  # fmt: skip
        oid = object_id(job.idempotency_key)
        status = "active" if verdict.passed else "quarantined"
        extra = {**meta, "prompt": prompt, "job_key": job.idempotency_key, "provider": job.provider,
                 "account": account, "compliance": verdict.as_dict()}  # fmt: skip
        if job.request.get("trend_boost"):
            extra["trend_boost"] = True
        await self.sink.publish(oid, data, ContentMeta(persona, meta.get("title"), status, self.clock.now(), extra))
        if verdict.passed:
            for lst, item in ((titles, str(meta.get("title") or "")), (prompts, prompt), (keys, job.idempotency_key)):
                lst.append(item)
                del lst[:-RECENT]
        if self.on_content is not None:
            self.on_content(persona, not verdict.passed)
        out: dict[str, Any] = {"object_id": oid, "content_status": status, "compliance": verdict.as_dict()}
        if verdict.passed and persona and self.enqueue is not None and self.platforms is not None:
            jobs = publication_jobs(oid, persona, meta.get("title"), self.platforms(persona), JobPriority(job.priority))
            if jobs:  # idempotent: a re-run of this step after a crash enqueues nothing twice
                await self.enqueue(jobs, self.clock.now())
                out["publications"] = [j.idempotency_key for j in jobs]
        return out
