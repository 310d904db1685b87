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
audit record. Reader (the agent): `DbPolicySource`, with the same callback shape as
`empire.policies.PolicyWatcher(on_change=...)`, so the loop can take either.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
import yaml

from empire.errors import TemporaryError
from empire.operator.spec import IDLE_POLICY, ConfigRef, SpecResult, parse_spec
from empire.policies import LoadedPolicy, PolicyError, parse_policy, policy_version
from empire.state.records import AuditRecord

__all__ = ["Applied", "DbPolicySource", "apply_policy", "withdraw_policy"]

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


OnChange = Callable[[LoadedPolicy], Awaitable[None] | None]


class DbPolicySource:
    """Follow the latest applied policy version in the state DB; hand each new valid one to `on_change`.

    The agent-side half of the hand-off, shaped like `PolicyWatcher`: `check()` polls once and
    answers "was a new policy swapped in?", `run()` polls every `interval` seconds forever, and
    `current` is the `LoadedPolicy` in force (None until the DB has one). The body is validated
    again here (an agent of another release may read a version written by an older operator);
    a version that fails is logged once and skipped, and `current` stays. `on_change` may be a
    plain function or a coroutine function.
    """

    def __init__(
        self,
        store: Any,
        on_change: OnChange | None = None,
        interval: float = 5.0,
        current: LoadedPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.store = store
        self.on_change = on_change
        self.interval = interval
        self.current = current
        self._sleep = sleep
        self._seen: str | None = current.version if current is not None else None
        self.last_error: str | None = None

    async def check(self) -> bool:
        """Poll once. True when a new valid policy was swapped in. DB errors propagate (TemporaryError)."""
        row = await self.store.latest_policy_version()
        if row is None or row["version"] == self._seen:
            return False
        self._seen = row["version"]
        source = str(row.get("source") or "state database")
        body = row.get("body") or {}
        try:
            policy = parse_policy(body, source=f"policy version {row['version']} ({source})")
        except PolicyError as exc:
            self.last_error = str(exc)
            logger.error("policy version %s from the state DB rejected, keeping %s:\n%s", row["version"],
                         self.current.version if self.current else "none", exc)  # fmt: skip
            return False
        self.last_error = None
        loaded = LoadedPolicy(
            policy=policy,
            version=policy_version(policy),
            source=source,
            text=yaml.safe_dump(body, sort_keys=False),
        )
        if self.current is not None and loaded.version == self.current.version:
            return False
        logger.info("policy from the state DB: version %s -> %s (%s)",
                    self.current.version if self.current else "none", loaded.version, source)  # fmt: skip
        self.current = loaded
        if self.on_change is not None:
            outcome = self.on_change(loaded)
            if inspect.isawaitable(outcome):
                await outcome
        return True

    async def run(self) -> None:
        """Poll forever; an unreachable DB is logged (once per distinct error) and polled again."""
        error: str | None = None
        while True:
            try:
                await self.check()
                error = None
            except TemporaryError as exc:
                if str(exc) != error:
                    logger.warning("policy poll failed, keeping %s: %s",
                                   self.current.version if self.current else "none", exc)  # fmt: skip
                error = str(exc)
            await self._sleep(self.interval)
