"""Check content objects against the inventory: each readable from exactly one tier, with its checksum.

Why after a restore: the inventory comes back as it was when the backup was taken, the bytes are
where the daemon left them since. An object moved after the backup is recorded in its old tier
and stored in the new one; a move interrupted by the disaster can leave a copy in both. Reading
every object back (or a random sample, for a quick look) says which, and `repair` makes the
inventory follow the bytes: an object missing from its recorded tier but intact (same checksum)
in exactly one other is recorded there; an intact object's extra copies in other tiers are
deleted. Nothing else is repaired: a mismatch or a missing object is reported, for a person
(`empire content verify ID --accept-current`, or a restore of the bytes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from empire.agent.ports import StorageBackend
from empire.agent.tiering.inventory import ContentObject, Inventory
from empire.errors import NotFoundError

__all__ = ["Finding", "VerifyReport", "verify_objects"]


@dataclass(frozen=True)
class Finding:
    object_id: str
    problem: str  # missing | mismatch | extra_copy | moved | moving
    detail: str
    repaired: bool = False


@dataclass
class VerifyReport:
    checked: int = 0
    intact: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.repaired and f.problem != "moving"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            key = f"{f.problem}{' (repaired)' if f.repaired else ''}"
            out[key] = out.get(key, 0) + 1
        return out


async def _checksum(backend: StorageBackend, tier: str, location: str) -> str | None:
    try:
        return await backend.checksum(tier, location)
    except NotFoundError:
        return None


async def verify_objects(
    objects: AsyncIterator[ContentObject] | Iterable[ContentObject],
    backend: StorageBackend,
    inventory: Inventory,
    now: datetime,
    *,
    repair: bool = False,
    actor: str = "cli:verify",
) -> VerifyReport:
    """Read each object back from its tier and look for it in the others; see the module docstring."""
    report = VerifyReport()
    items = objects if hasattr(objects, "__aiter__") else _aiter(objects)  # type: ignore[arg-type]
    async for obj in items:  # type: ignore[union-attr]
        report.checked += 1
        if obj.status == "moving":
            report.findings.append(Finding(obj.id, "moving", f"a move of it is under way ({obj.tier})"))
            continue
        found = {}
        for tier in backend.tier_names:
            if tier == obj.tier or await backend.exists(tier, obj.location):
                found[tier] = await _checksum(backend, tier, obj.location)
        here = found.pop(obj.tier, None)
        intact_elsewhere = [t for t, c in found.items() if c == obj.checksum]
        if here == obj.checksum:
            if not found:
                report.intact += 1
                continue
            for tier in found:
                if repair:
                    await backend.delete(tier, obj.location)
                report.findings.append(Finding(obj.id, "extra_copy", f"also in {tier} (inventory: {obj.tier})", repair))
            continue
        if here is None and len(intact_elsewhere) == 1 and len(found) == 1:
            tier = intact_elsewhere[0]
            if repair:
                await inventory.relocate(obj.id, tier, now, actor=actor, note=f"found intact in {tier}, not {obj.tier}")
            report.findings.append(Finding(obj.id, "moved", f"intact in {tier}, recorded in {obj.tier}", repair))
            continue
        if here is None:
            where = f"; copies in {', '.join(sorted(found))}" if found else ""
            report.findings.append(Finding(obj.id, "missing", f"not in {obj.tier}{where}"))
        else:
            report.findings.append(Finding(obj.id, "mismatch", f"{obj.tier}: {here[:19]}... vs inventory "
                                                               f"{obj.checksum[:19]}..."))  # fmt: skip
    return report


async def _aiter(items: Iterable[ContentObject]) -> AsyncIterator[ContentObject]:
    for item in items:
        yield item


async def every_object(inventory: Inventory, batch: int = 1000) -> AsyncIterator[ContentObject]:
    after = ""
    while page := await inventory.page(after, batch):
        for obj in page:
            yield obj
        after = page[-1].id
