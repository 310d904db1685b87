"""`MemoryInventory` and `MemoryMoveJournal`: in-process twins of the tiering area's `Inventory` and
`MoveJournal` ports.

The inventory selects moves with the pure `planner.plan_object` (what the SQL selection mirrors term
by term); the journal keeps its rows beside the inventory's objects (a move switches their pointer).
They pass the same contract suites as `empire.state.inventory.SqlInventory` and
`empire.state.moves.SqlMoveJournal` (tests/contract/), so the sweep runs in a unit test without a database.
Not for production: nothing here survives a restart or is shared.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from empire.agent.tiering.inventory import (
    MAX_REVENUE,
    AccessEvent,
    ContentObject,
    RevenueFigure,
    TierUsage,
    decay_add,
    refuse_bad,
    valid_checksum,
)
from empire.agent.tiering.journal import (
    UNFINISHED_STEPS,
    Move,
    MoveAborted,
    MoveLost,
    Skipped,
    Unfinished,
    skip_reason,
)
from empire.agent.tiering.planner import MoveSummary, PlannedMove, plan_object
from empire.agent.types import Reason
from empire.errors import ConfigError, NotFoundError
from empire.policies.storage import StoragePolicy

__all__ = ["MemoryInventory", "MemoryMoveJournal"]


class MemoryInventory:
    """`Inventory` in a dict. `audit` lists what the SQL inventory writes to the `audit` table."""

    def __init__(self) -> None:
        self._objects: dict[str, ContentObject] = {}
        self.audit: list[dict[str, Any]] = []

    def _audit(self, at: datetime, actor: str, action: str, subject: str, **details: Any) -> None:
        self.audit.append({"at": at, "actor": actor[:128], "action": action, "subject": subject[:256],
                           "details": details})  # fmt: skip

    def _known(self, ids: list[str]) -> None:
        missing = [i for i in ids if i not in self._objects]
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise NotFoundError(f"unknown content object(s): {shown}")

    # ------------------------------------------------------------------ objects
    async def register(self, obj: ContentObject, *, actor: str = "system") -> None:
        if not valid_checksum(obj.checksum):
            raise ConfigError(f"object {obj.id}: checksum must be 'sha256:<64 hex digits>', got {obj.checksum!r}")
        existing = self._objects.get(obj.id)
        if existing is not None:
            if existing.checksum != obj.checksum:
                raise ConfigError(f"object {obj.id} exists with another checksum ({existing.checksum})")
            return
        self._objects[obj.id] = replace(obj, meta=dict(obj.meta))
        self._audit(obj.created_at, actor, "content.register", f"object/{obj.id}", tier=obj.tier, size=obj.size)

    async def get(self, object_id: str) -> ContentObject:
        obj = self._objects.get(object_id)
        if obj is None:
            raise NotFoundError(f"no content object {object_id!r}")
        return obj

    async def missing(self, ids: set[str] | list[str]) -> list[str]:
        return [i for i in sorted(set(ids)) if i not in self._objects]

    async def all(self, limit: int = 10_000) -> list[ContentObject]:
        return [self._objects[i] for i in sorted(self._objects)][:limit]

    async def page(self, after: str = "", limit: int = 1000) -> list[ContentObject]:
        return [self._objects[i] for i in sorted(self._objects) if i > after][:limit]

    async def sample(self, n: int) -> list[ContentObject]:
        chosen = random.sample(sorted(self._objects), min(n, len(self._objects)))
        return [self._objects[i] for i in sorted(chosen)]

    async def relocate(self, object_id: str, tier: str, at: datetime, *, actor: str, note: str) -> None:
        obj = await self.get(object_id)
        self._objects[object_id] = replace(obj, tier=tier, tier_since=at, status="active")
        self._audit(at, actor, "content.relocate", f"object/{object_id}", old=obj.tier, new=tier, note=note)

    async def set_status(self, object_id: str, status: str, at: datetime, *, actor: str, note: str = "") -> None:
        if object_id in self._objects:
            self._objects[object_id] = replace(self._objects[object_id], status=status)
        self._audit(at, actor, f"content.{status}", f"object/{object_id}", note=note)

    async def accept_checksum(self, object_id: str, checksum: str, at: datetime, *, actor: str) -> None:
        if not valid_checksum(checksum):
            raise ConfigError(f"invalid checksum {checksum!r}")
        obj = await self.get(object_id)
        if obj.status == "moving":
            raise ConfigError(f"{object_id} is being moved")
        self._objects[object_id] = replace(obj, checksum=checksum, status="active")
        self._audit(at, actor, "content.accept_checksum", f"object/{object_id}", old=obj.checksum, new=checksum)

    # ------------------------------------------------------------------ ingestion
    async def record_access(self, events: list[AccessEvent], half_life: timedelta, *, actor: str, at: datetime) -> int:
        if not events:
            return 0
        refuse_bad(events, at)
        ids = sorted({e.object_id for e in events})
        self._known(ids)
        state = {i: (self._objects[i].access_score, self._objects[i].access_updated_at,
                     self._objects[i].last_access_at) for i in ids}  # fmt: skip
        for e in sorted(events, key=lambda e: e.at):
            score, stamp, last = state[e.object_id]
            score, stamp = decay_add(score, stamp, e.at, e.count, half_life)
            state[e.object_id] = (score, stamp, e.at if last is None or e.at > last else last)
        for oid, (score, stamp, last) in state.items():
            self._objects[oid] = replace(self._objects[oid], access_score=score, access_updated_at=stamp,
                                         last_access_at=last)  # fmt: skip
        self._audit(at, actor, "content.access", f"object/{ids[0]}" if len(ids) == 1 else f"objects/{len(ids)}",
                    objects=len(ids), accesses=sum(e.count for e in events), ids=ids[:50])  # fmt: skip
        return len(ids)

    async def record_revenue(self, figures: list[RevenueFigure], *, actor: str, at: datetime) -> int:
        if not figures:
            return 0
        refuse_bad(figures, at)
        ids = sorted({f.object_id for f in figures})
        self._known(ids)
        totals = {i: self._objects[i].revenue for i in ids}
        for f in figures:
            totals[f.object_id] = totals[f.object_id] + f.amount if f.mode == "add" else f.amount
            if not abs(totals[f.object_id]) <= MAX_REVENUE:
                raise ConfigError(f"revenue of {f.object_id} would reach {totals[f.object_id]:g}, "
                                  f"more than {MAX_REVENUE:,.0f} in size")  # fmt: skip
        for oid, value in totals.items():
            self._objects[oid] = replace(self._objects[oid], revenue=value)
        self._audit(at, actor, "content.revenue", f"object/{ids[0]}" if len(ids) == 1 else f"objects/{len(ids)}",
                    objects=len(ids), figures=[[f.object_id, f.amount, f.mode] for f in figures[:50]])  # fmt: skip
        return len(ids)

    # ------------------------------------------------------------------ planning and status
    def _moves(self, policy: StoragePolicy, now: datetime) -> list[PlannedMove]:
        moves = [m for o in self._objects.values() if (m := plan_object(o.view(), policy, now)) is not None]
        return sorted(moves, key=lambda m: (-m.monthly_saving, m.object_id))

    async def plan(self, policy: StoragePolicy, now: datetime, limit: int) -> list[PlannedMove]:
        return self._moves(policy, now)[:limit]

    async def plan_summary(self, policy: StoragePolicy, now: datetime) -> list[MoveSummary]:
        groups: dict[tuple[str, str], list[PlannedMove]] = defaultdict(list)
        for m in self._moves(policy, now):
            groups[(m.from_tier, m.to_tier)].append(m)
        return [MoveSummary(src, dst, len(ms), sum(m.size for m in ms), sum(m.monthly_saving for m in ms))
                for (src, dst), ms in sorted(groups.items())]  # fmt: skip

    async def usage(self) -> list[TierUsage]:
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for o in self._objects.values():
            u = out[o.tier]
            u[0] += 1
            u[1] += o.size
            u[2] += o.status == "moving"
            u[3] += o.status == "quarantined"
        return [TierUsage(tier, *out[tier]) for tier in sorted(out)]


@dataclass
class _Row:
    move: Move
    step: str
    owner: str | None
    lease_expires_at: datetime | None
    error: str | None = None


class MemoryMoveJournal:
    """`MoveJournal` over a `MemoryInventory` (whose objects a move marks `moving` and switches)."""

    def __init__(self, inventory: MemoryInventory) -> None:
        self.inventory = inventory
        self._rows: dict[int, _Row] = {}

    async def claim(
        self,
        object_id: str,
        to_tier: str,
        reason: Reason,
        from_tier: str | None,
        *,
        dst: str,
        tiers: Collection[str],
        owner: str,
        now: datetime,
        lease_until: datetime,
    ) -> Move | Skipped:
        obj = await self.inventory.get(object_id)
        why = skip_reason(obj.status, obj.tier, to_tier, from_tier, tiers)
        if why is not None:
            return Skipped(obj.tier, why)
        self.inventory._objects[object_id] = replace(obj, status="moving")
        move = Move(
            len(self._rows) + 1, object_id, obj.tier, to_tier, obj.location, dst, reason, obj.checksum, obj.size
        )
        self._rows[move.id] = _Row(move, "planned", owner, lease_until)
        return move

    def _own(self, move: Move, owner: str, lease_until: datetime, **values: Any) -> _Row:
        row = self._rows.get(move.id)
        if row is None or row.owner != owner:
            raise MoveLost()
        row.lease_expires_at = lease_until
        for k, v in values.items():
            setattr(row, k, v)
        return row

    async def renew(self, move: Move, owner: str, now: datetime, lease_until: datetime, **values: Any) -> None:
        self._own(move, owner, lease_until, **values)

    async def switch(self, move: Move, owner: str, now: datetime, lease_until: datetime) -> None:
        row = self._rows.get(move.id)
        if row is None or row.owner != owner:
            raise MoveLost()
        obj = self.inventory._objects.get(move.object_id)
        if obj is None or (obj.status, obj.tier, obj.location) != ("moving", move.from_tier, move.src):
            raise MoveAborted("object changed during the move (pointer no longer on the source)")
        self._own(move, owner, lease_until, step="switched")
        self.inventory._objects[move.object_id] = replace(obj, tier=move.to_tier, location=move.dst, tier_since=now,
                                                          status="active")  # fmt: skip

    async def pointer(self, move: Move, owner: str, now: datetime, lease_until: datetime) -> tuple[str, str] | None:
        self._own(move, owner, lease_until)
        obj = self.inventory._objects.get(move.object_id)
        return (obj.tier, obj.location) if obj is not None else None

    async def aborted(
        self,
        move: Move,
        owner: str,
        now: datetime,
        lease_until: datetime,
        *,
        error: str,
        quarantine: bool,
        actor: str,
    ) -> None:
        self._own(move, owner, lease_until, step="aborted", error=error)
        obj = self.inventory._objects.get(move.object_id)
        if obj is not None and obj.status == "moving":
            self.inventory._objects[move.object_id] = replace(obj, status="quarantined" if quarantine else "active")
        if quarantine:
            self.inventory._audit(now, actor, "content.quarantined", f"object/{move.object_id}", error=error)

    async def take_over(
        self, move: Move, step: str, previous: str | None, owner: str, now: datetime, lease_until: datetime
    ) -> bool:
        row = self._rows.get(move.id)
        if row is None or row.step != step or row.owner != previous:
            return False
        row.owner, row.lease_expires_at = owner, lease_until
        return True

    async def unfinished(self) -> list[Unfinished]:
        out = []
        for move_id in sorted(self._rows):
            row = self._rows[move_id]
            if row.step in UNFINISHED_STEPS and row.move.object_id in self.inventory._objects:
                obj = self.inventory._objects[row.move.object_id]
                move = replace(row.move, checksum=obj.checksum, size=obj.size)
                out.append(Unfinished(move, row.step, row.owner, row.lease_expires_at))
        return out
