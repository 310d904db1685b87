"""The move journal (the tiering area's `MoveJournal` port): where each move's step, owner and lease live.

The mover (`mover.py`) runs copy -> verify -> switch -> delete and journals each step here before the
next starts; every write is a compare-and-set on the move's owner that renews its lease, and raises
`MoveLost` when another process owns the move now. `empire.state.moves.SqlMoveJournal` keeps it in the
state DB (table `moves`, the pointer in `content_objects`); `empire.agent.tiering.memory.MemoryMoveJournal`
is the in-process twin over a `MemoryInventory`. `tests/contract/test_move_journal.py` runs one suite
over all three; the crash and race tests (tests/integration/test_tiering_*) run the SQL one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from empire.agent.types import Reason

__all__ = ["UNFINISHED_STEPS", "Move", "MoveAborted", "MoveJournal", "MoveLost", "Skipped", "Unfinished"]

UNFINISHED_STEPS = ("planned", "copied", "verified", "switched")


@dataclass
class Move:
    id: int
    object_id: str
    from_tier: str
    to_tier: str
    src: str
    dst: str
    reason: Reason
    checksum: str
    size: int


@dataclass(frozen=True)
class Skipped:
    """A move not started, and why (the object is not active, not where it was planned, ...)."""

    tier: str  # where the object is
    why: str


@dataclass(frozen=True)
class Unfinished:
    move: Move
    step: str
    owner: str | None
    lease_expires_at: datetime | None


class MoveLost(Exception):
    """Another process's recovery owns this move now: stop, touch nothing."""


class MoveAborted(Exception):
    def __init__(self, message: str, quarantine: bool = False) -> None:
        super().__init__(message)
        self.quarantine = quarantine


def skip_reason(status: str, tier: str, to_tier: str, from_tier: str | None, tiers: Collection[str]) -> str | None:
    """Why an object cannot start a move to `to_tier` now, or None (every journal checks the same)."""
    if status != "active":
        return f"object is {status}"
    if from_tier is not None and tier != from_tier:
        return f"object is in {tier}, not {from_tier} (moved since it was planned)"
    if tier == to_tier:
        return f"object is already in {to_tier}"
    if tier not in tiers:
        return f"object's tier {tier} is not configured"
    return None


class MoveJournal(Protocol):
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
        """Start a move: the object becomes `moving` and a `planned` row owned by `owner` is written, in
        one transaction; or `Skipped` (see `skip_reason`). NotFoundError for an unknown object."""
        ...

    async def renew(self, move: Move, owner: str, now: datetime, lease_until: datetime, **values: Any) -> None:
        """Compare-and-set on the owner: renew the lease and write `values` (`step`, `error`); `MoveLost`
        when the move is not `owner`'s."""
        ...

    async def switch(self, move: Move, owner: str, now: datetime, lease_until: datetime) -> None:
        """Step `switched` and the object's pointer on the target, in one transaction: `MoveLost` (not
        ours) or `MoveAborted` (the pointer is no longer on the source) and nothing is written."""
        ...

    async def pointer(self, move: Move, owner: str, now: datetime, lease_until: datetime) -> tuple[str, str] | None:
        """Renew (as `renew`), then where the object's row points: (tier, location), or None."""
        ...

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
        """Step `aborted` with `error` (compare-and-set), the object back to `active` at its source, or
        `quarantined` (audited) for an operator; in one transaction."""
        ...

    async def take_over(
        self, move: Move, step: str, previous: str | None, owner: str, now: datetime, lease_until: datetime
    ) -> bool:
        """Claim an orphaned move still at `step` and owned by `previous`: one claimant wins."""
        ...

    async def unfinished(self) -> list[Unfinished]:
        """Moves not done or aborted, by id."""
        ...
