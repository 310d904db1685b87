"""The hand-off between the operator and the agent: the state DB's `policy_versions` table.

Why through the database and not in-process: the operator and `empire run` are separate processes
(separate containers, possibly separate pods and replicas), and the agent already depends on the
state DB for its journal. The operator writes each validated spec as a new *applied* policy
version; every agent replica polls the latest applied version (`DbPolicySource`) and swaps it in.
The table keeps every version with its source and time, so "which policy was in force at 3 am?"
has an answer, and an agent that restarts picks up the policy in force without the operator.

Writers (the operator): `apply_policy` (skips the write when that version is already in force:
an operator restart or a no-op edit changes nothing) and `withdraw_policy` (the EmpireConfig in
force was deleted: hand over to the next one, or go idle with `IDLE_POLICY`). Both leave an
audit record. Reader (the agent): `empire.agent.policysource.DbPolicySource`, with the same callback shape as
`empire.policies.loading.PolicyWatcher(on_change=...)`, so the loop can take either.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from empire.agent.records import AuditRecord
from empire.operator.spec import ConfigRef, SpecResult, parse_spec
from empire.policies.schema import IDLE_POLICY

__all__ = ["Applied", "apply_policy", "withdraw_policy"]

logger = logging.getLogger(__name__)
ACTOR = "operator"


@dataclass(frozen=True)
class Applied:
    """What `apply_policy`/`withdraw_policy` did: `changed` is False when the version was in force."""

    changed: bool
    version: str | None
    previous: str | None
    source: str = ""


async def apply_policy(store: Any, result: SpecResult, now: datetime, source: str | None = None) -> Applied:
    """Make a validated spec the policy in force. Skips the write when that version is in force."""
    if not result.ok or result.version is None:
        raise ValueError("apply_policy needs a valid SpecResult")
    latest = await store.latest_policy_version()
    previous = latest["version"] if latest else None
    src = source or result.ref.source()
    if previous == result.version:
        return Applied(False, result.version, previous, src)
    await store.save_policy_version(result.version, source=src, body=result.body, at=now, applied=True)
    await store.audit(
        AuditRecord(
            at=now, actor=ACTOR, action="policy.apply", subject=result.ref.describe(),
            details={"version": result.version, "previous": previous, "generation": result.ref.generation,
                     "source": src},
        )
    )  # fmt: skip
    logger.info("policy version %s applied from %s (was %s)", result.version, src, previous)
    return Applied(True, result.version, previous, src)


async def withdraw_policy(
    store: Any, ref: ConfigRef, was_in_force: bool, successor: SpecResult | None, now: datetime
) -> Applied:
    """The EmpireConfig `ref` is being deleted.

    If it was the one in force, the next EmpireConfig (`successor`, when valid) takes over, else
    the agent goes idle with `IDLE_POLICY`. If it was not in force, nothing changes in the policy.
    The deletion is audited either way.
    """
    outcome = Applied(False, None, None)
    if was_in_force:
        if successor is not None and successor.ok:
            outcome = await apply_policy(store, successor, now)
        else:
            idle = parse_spec(IDLE_POLICY, ref)
            outcome = await apply_policy(store, idle, now, source=f"idle: {ref.describe()} was deleted")
    await store.audit(
        AuditRecord(
            at=now, actor=ACTOR, action="policy.withdraw", subject=ref.describe(),
            details={"was_in_force": was_in_force, "now_in_force": outcome.version, "source": outcome.source},
        )
    )  # fmt: skip
    return outcome
