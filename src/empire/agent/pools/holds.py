"""Holds: paused personas and drained accounts, kept in the state DB so they survive a restart.

Why durable: they are alert remediations (`pause_persona`, `drain_account`) and operator
overrides (`empire pools hold`). A daemon restarted while the alert still fires must keep the
persona paused (the alert will not fire again: it already is firing), and every replica's
dispatcher must stop routing to a drained account, not only the leader that executed the action.

One row per (kind, subject, source): `source` is the alert rule that asked (or "manual"), so two
alerts holding the same persona do not release each other; a subject is held while *any* of its
sources holds it. Rows are kept after a release (held = false) as the last word of that source.
Every change is audited in the same transaction.

Who honours what:
- the planner skips paused personas (`Reason.persona_paused`, journaled as held-back work);
- the queue does not claim queued jobs of paused personas (`JobQueue.held_personas`);
- routing skips drained accounts (`PoolRegistry.drained`); jobs in flight on them finish.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["MANUAL", "Hold", "HoldKind", "HoldStore", "Holds", "active_holds"]

MANUAL = "manual"


class HoldKind(StrEnum):
    persona = "persona"
    account = "account"  # subject "provider/account"


@dataclass(frozen=True)
class Hold:
    kind: HoldKind
    subject: str
    source: str
    held: bool
    reason: str
    actor: str
    updated_at: datetime

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "subject": self.subject, "source": self.source, "held": self.held,
                "reason": self.reason, "actor": self.actor, "updated_at": self.updated_at.isoformat()}  # fmt: skip


@dataclass(frozen=True)
class Holds:
    """What is held right now."""

    personas: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()  # "provider/account"


class HoldStore(Protocol):
    """Where holds live. `empire.state.holds.SqlHoldStore` (SQLite, PostgreSQL) keeps them in the state
    DB and audits every change in the same transaction; `empire.agent.pools.memory.MemoryHoldStore` is
    the in-process twin. `tests/contract/test_hold_store.py` runs one suite over all three."""

    async def set(
        self, kind: HoldKind, subject: str, source: str, held: bool, *, reason: str, actor: str, at: datetime
    ) -> bool:
        """Hold or release `subject` for `source`; True when that changed anything (releasing what was
        never held changes nothing)."""
        ...

    async def release_all(self, kind: HoldKind, subject: str, *, actor: str, at: datetime) -> int:
        """Release `subject` for every source (the operator's override). Returns how many were held."""
        ...

    async def get(self, kind: HoldKind, subject: str, source: str) -> Hold | None: ...

    async def list(self, held_only: bool = True) -> list[Hold]:
        """Ordered by kind, subject, source."""
        ...

    async def active(self) -> Holds: ...


def active_holds(rows: Iterable[Hold]) -> Holds:
    """What the held rows among `rows` hold."""
    held = [h for h in rows if h.held]
    return Holds(
        frozenset(h.subject for h in held if h.kind is HoldKind.persona),
        frozenset(h.subject for h in held if h.kind is HoldKind.account),
    )
