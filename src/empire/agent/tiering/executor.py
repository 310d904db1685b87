"""The tiering area's executor: a `Retier` action runs the crash-safe mover.

The sweep (`sweep.py`) decides which objects move and hands each one as a `Retier` action to the
journaling action runner; this executor then runs the mover. The mover keeps its own step journal
(`moves`); the action journal answers "what did the agent decide and why", the move journal "how
far did the bytes get".
"""

from __future__ import annotations

import logging
from typing import Any

from empire.agent.records import ActionRecord
from empire.agent.tiering.inventory import Inventory
from empire.agent.tiering.mover import Mover, MoveResult
from empire.agent.types import Outcome, OutcomeStatus, ReadBack, Reason, Retier
from empire.errors import NotFoundError

__all__ = ["RetierExecutor", "outcome_of"]

logger = logging.getLogger(__name__)


def outcome_of(result: MoveResult) -> Outcome:
    state: dict[str, Any] = {"tier": result.to_tier if result.status == "done" else result.from_tier,
                             "bytes": result.bytes, "move_id": result.move_id}  # fmt: skip
    if result.status == "done":
        return Outcome(OutcomeStatus.applied, error=result.error, state=state)
    if result.status == "skipped":
        return Outcome(OutcomeStatus.unchanged, Reason.no_change, result.error, state=state)
    klass = "temporary" if result.status == "failed" else "permanent"
    return Outcome(OutcomeStatus.failed, Reason.execution_failed, result.error, klass, state=state)


class RetierExecutor:
    """`ports.Executor` for `Retier` actions."""

    def __init__(self, mover: Mover, inventory: Inventory) -> None:
        self.mover = mover
        self.inventory = inventory

    async def execute(self, action: Any) -> Outcome:
        if not isinstance(action, Retier):
            raise TypeError(f"RetierExecutor cannot run {type(action).__name__}")
        reason = action.reasons[0] if action.reasons else Reason.manual
        result = await self.mover.move(action.object_id, action.to_tier, reason, from_tier=action.from_tier)
        return outcome_of(result)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        """Did an unfinished retier intent take effect? The inventory row says where the object is;
        a move still `moving` is settled by the mover's recovery first, so answer "unknown"."""
        object_id = record.subject.removeprefix("object/")
        try:
            obj = await self.inventory.get(object_id)
        except NotFoundError:
            return ReadBack(applied=False, note="object no longer in the inventory")
        if obj.status == "moving":
            return ReadBack(applied=None, note="move still in progress or awaiting recovery")
        applied = obj.tier == record.params.get("to_tier")
        return ReadBack(applied=applied, state={"tier": obj.tier})
