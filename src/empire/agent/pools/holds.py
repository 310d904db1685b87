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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from empire.agent.ports import Clock
from empire.agent.records import ActionRecord
from empire.agent.types import Action, DrainAccount, Outcome, OutcomeStatus, PausePersona, ReadBack, Reason
from empire.errors import PermanentError
from empire.policies.schema import Policy

__all__ = ["MANUAL", "Hold", "HoldExecutor", "HoldKind", "HoldStore", "Holds", "active_holds"]

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


def _target(action: Action | ActionRecord) -> tuple[HoldKind, str, str, bool]:
    """(kind, subject, source, held) of a pause/drain action or its journal record."""
    if isinstance(action, PausePersona):
        return HoldKind.persona, action.persona, action.alert or MANUAL, action.paused
    if isinstance(action, DrainAccount):
        return HoldKind.account, f"{action.provider}/{action.account}", action.alert or MANUAL, action.drained
    if isinstance(action, ActionRecord):
        p = action.params
        source = str(p.get("alert") or MANUAL)
        if action.kind == PausePersona.kind:
            return HoldKind.persona, str(p.get("persona", "")), source, bool(p.get("paused"))
        if action.kind == DrainAccount.kind:
            return HoldKind.account, f"{p.get('provider')}/{p.get('account')}", source, bool(p.get("drained"))
    raise PermanentError(f"the hold executor cannot run a {getattr(action, 'kind', type(action).__name__)!r} action")


class HoldExecutor:
    """The `Executor` port for `PausePersona` and `DrainAccount` (register it for both kinds).

    `on_change(holds)` is called after every change, so this replica's planner, queue and
    dispatcher follow at once; the other replicas pick the change up from the table."""

    def __init__(
        self,
        store: HoldStore,
        policy: Callable[[], Policy],
        clock: Clock,
        actor: str,
        on_change: Callable[[Holds], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.actor = actor
        self.on_change = on_change

    def _check(self, kind: HoldKind, subject: str) -> None:
        pol = self.policy()
        if kind is HoldKind.persona and subject not in {p.name for p in pol.personas}:
            raise PermanentError(f"persona {subject!r} is not in the policy")
        if kind is HoldKind.account:
            known = {f"{p.name}/{a.name}" for p in pol.providers for a in p.accounts}
            if subject not in known:
                raise PermanentError(f"account {subject!r} is not in the policy (provider/account)")

    async def execute(self, action: Action) -> Outcome:
        kind, subject, source, held = _target(action)
        if held:  # releasing a name the policy no longer has is fine: it frees the row
            self._check(kind, subject)
        reason = action.reasons[0].value if action.reasons else Reason.manual.value
        changed = await self.store.set(kind, subject, source, held, reason=reason, actor=self.actor,
                                       at=self.clock.now())  # fmt: skip
        holds = await self.store.active()
        if self.on_change is not None:
            self.on_change(holds)
        still = subject in (holds.personas if kind is HoldKind.persona else holds.accounts)
        state = {"held": still, "source": source}
        if not changed:
            return Outcome(OutcomeStatus.unchanged, reason=Reason.no_change, state=state)
        return Outcome(OutcomeStatus.applied, state=state)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        kind, subject, source, held = _target(record)
        hold = await self.store.get(kind, subject, source)
        current = hold.held if hold is not None else False
        return ReadBack(current == held, {"held": current, "source": source})
