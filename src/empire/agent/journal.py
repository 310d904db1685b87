"""The journaling action runner: every action of every area goes through `ActionRunner.run`.

Why one runner: "what did the agent do, why, and did it work?" must have one answer whatever
the area (scaling, generation, tiering, alerting). The runner enforces the journal protocol:

1. write an *intent* (idempotency key from `types.action_key`) BEFORE anything touches the world;
   if the intent cannot be written (database down) the action is not executed at all, and while
   `state_health` says the database is down no intent is even tried: the action is *held*
   (`skipped`, reason `state_db_down`);
2. execute through the executor registered for the action's kind (`ports.Executor`);
3. mark the intent `applied` / `failed` / `skipped`, with the error class ("temporary",
   "permanent", "internal") and message;
4. count it in `empire_actions_total{kind,reason,result}` and log one INFO line.

Execution and the final journal write run in a *shielded* cancel scope (bounded by a timeout), so
a SIGTERM that cancels the loop lets the in-flight action finish and be journaled.

At start, `reconcile()` reads back every intent left unfinished by a crash and settles it from the
real state: an intent is never re-applied blindly (the next tick decides afresh from what it sees).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio

from empire.agent.monitor import Monitor
from empire.agent.ports import Clock, Executor, LeaderElection, StateStore
from empire.agent.records import ActionRecord, ActionState, AuditRecord
from empire.agent.types import Action, Outcome, OutcomeStatus, ReadBack, Reason, action_key, error_class
from empire.errors import PermanentError, StateDbError, TemporaryError
from empire.logrepeat import log_unless_reported

__all__ = ["ActionRunner", "ReconcileResult", "action_extra", "primary_reason"]

logger = logging.getLogger(__name__)

_STATE_FOR = {
    OutcomeStatus.applied: ActionState.applied,
    OutcomeStatus.unchanged: ActionState.skipped,
    OutcomeStatus.skipped: ActionState.skipped,
    OutcomeStatus.failed: ActionState.failed,
}


def primary_reason(action: Action) -> Reason:
    """The cause of an action: its first reason (later ones are clamps and limits)."""
    return action.reasons[0] if action.reasons else Reason.manual


def action_extra(action: Action) -> str:
    """The part of an action that distinguishes two actions on one subject at one instant."""
    params = action.params()
    for key in ("replicas", "to_tier", "count"):
        if key in params:
            return str(params[key])
    return ""


def _describe(action: Action) -> str:
    p = action.params()
    if "replicas" in p:
        return f"{p.get('current')}->{p['replicas']} replicas"
    return " ".join(f"{k}={v}" for k, v in p.items() if not isinstance(v, dict | list))


@dataclass(frozen=True)
class ReconcileResult:
    record: ActionRecord
    read_back: ReadBack | None
    settled_as: ActionState | None  # None: left unfinished for a later try


class ActionRunner:
    """Journal -> execute -> journal, for every action kind.

    `executors` maps an action kind (`"scale"`, `"generate"`, ...) or an action class to its
    executor; other areas call `register()` at start. `dry_run` may be flipped at run time
    (policy reload); `leader`, when given, is consulted before each action so that a replica
    that lost its lease stops acting at once. `state_health` (a `StateHealth`), when given, holds
    every action while the state database is down.
    """

    def __init__(
        self,
        store: StateStore,
        executors: Mapping[str | type, Executor] | None = None,
        clock: Clock | None = None,
        monitor: Monitor | None = None,
        *,
        dry_run: bool = False,
        replica: str | None = None,
        leader: LeaderElection | None = None,
        timeout: float = 60.0,
        state_health: Any = None,
    ) -> None:
        from empire.agent.clock import SystemClock

        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.monitor = monitor or Monitor()
        self.dry_run = dry_run
        self.replica = replica
        self.leader = leader
        self.timeout = timeout
        self.state_health = state_health
        self._executors: dict[str, Executor] = {}
        self._inflight: set[int] = set()
        for kind, executor in (executors or {}).items():
            self.register(kind, executor)

    def register(self, kind: str | type, executor: Executor) -> None:
        name = kind if isinstance(kind, str) else kind.kind
        self._executors[name] = executor

    def executor(self, kind: str) -> Executor | None:
        return self._executors.get(kind)

    async def run(
        self, action: Action, decision_id: int | None = None, *, key: str | None = None, at: datetime | None = None
    ) -> Outcome:
        """Journal and execute one action; never raises for an execution failure (it is journaled)."""
        now = at or self.clock.now()
        cause = primary_reason(action)
        if self.leader is not None and not self.leader.is_leader:
            return self._count(action, Outcome(OutcomeStatus.skipped, Reason.not_leader), cause)
        if self.state_health is not None and not self.state_health.up:
            logger.debug("action %s %s held: the state database is down", action.kind, action.subject)
            return self._count(action, Outcome(OutcomeStatus.skipped, Reason.state_db_down, self.state_health.message),
                               cause)  # fmt: skip
        key = key or action_key(action.kind, action.subject, now, action_extra(action))
        params: dict[str, Any] = {**action.params(), "reasons": [r.value for r in action.reasons]}
        intent = ActionRecord(
            idempotency_key=key, kind=action.kind, subject=action.subject, params=params, reason=cause.value,
            state=ActionState.intent, created_at=now, updated_at=now, decision_id=decision_id, replica=self.replica,
        )  # fmt: skip
        try:
            stored = await self.store.write_intent(intent)
        except Exception as exc:  # the journal is the precondition: no intent, no action
            log_unless_reported(
                logger,
                exc,
                "action %s %s not executed: cannot journal the intent: %s",
                action.kind,
                action.subject,
                exc,
            )
            if isinstance(exc, StateDbError):
                out = Outcome(OutcomeStatus.skipped, Reason.state_db_down, str(exc))
            else:
                out = Outcome(OutcomeStatus.failed, Reason.execution_failed, str(exc), error_class(exc))
            return self._count(action, out, cause)
        if stored.state != ActionState.intent or stored.created_at != now or stored.replica != self.replica:
            out = Outcome(OutcomeStatus.duplicate, None, action_id=stored.id)
            logger.info("action %s %s: key %s already journaled (%s), not executed again",
                        action.kind, action.subject, key, stored.state)  # fmt: skip
            return self._count(action, out, cause)
        assert stored.id is not None
        self._inflight.add(stored.id)
        try:
            with anyio.CancelScope(shield=True):
                out = await self._execute(action, stored)
                out = Outcome(out.status, out.reason, out.error, out.error_class, out.state, stored.id)
                await self._finish(stored, out)
        finally:
            self._inflight.discard(stored.id)
        extra = (f" [{out.reason.value}]" if out.reason else "") + (f": {out.error}" if out.error else "")
        logger.info(
            "action %s %s %s: %s%s (reasons: %s)", action.kind, action.subject, _describe(action), out.status.value,
            extra, ", ".join(r.value for r in action.reasons),
        )  # fmt: skip
        return self._count(action, out, cause)

    async def _execute(self, action: Action, stored: ActionRecord) -> Outcome:
        if Reason.paused in action.reasons:
            return Outcome(OutcomeStatus.skipped, Reason.paused)
        if self.dry_run:
            return Outcome(OutcomeStatus.skipped, Reason.dry_run)
        executor = self._executors.get(action.kind)
        if executor is None:
            msg = f"no executor registered for {action.kind!r} actions"
            return Outcome(OutcomeStatus.failed, Reason.execution_failed, msg, "permanent")
        try:
            with anyio.fail_after(self.timeout):
                return await executor.execute(action)
        except TimeoutError:
            return await self._settle_timeout(executor, stored)
        except (TemporaryError, PermanentError) as exc:
            return Outcome(OutcomeStatus.failed, Reason.execution_failed, str(exc), error_class(exc))
        except Exception as exc:
            logger.exception("executor for %s raised unexpectedly", action.kind)
            return Outcome(OutcomeStatus.failed, Reason.execution_failed, f"{type(exc).__name__}: {exc}", "internal")

    async def _settle_timeout(self, executor: Executor, stored: ActionRecord) -> Outcome:
        """A timed-out action may still have taken effect (the request landed, the answer did not):
        read the world back rather than journal a guess. Unreadable -> failed, temporary."""
        msg = f"executor timed out after {self.timeout:g}s"
        try:
            with anyio.fail_after(self.timeout):
                rb = await executor.read_back(stored)
        except Exception as exc:
            return Outcome(
                OutcomeStatus.failed, Reason.execution_failed, f"{msg}; read-back failed: {exc}", "temporary"
            )
        note = f"{msg}; read back: {rb.note}" if rb.note else msg
        if rb.applied:
            return Outcome(OutcomeStatus.applied, error=f"{note}: it took effect", state=rb.state)
        return Outcome(OutcomeStatus.failed, Reason.execution_failed, note, "temporary", state=rb.state)

    async def _finish(self, stored: ActionRecord, out: Outcome) -> None:
        state = _STATE_FOR[out.status]
        if out.error:
            error = f"{out.error_class}: {out.error}" if out.error_class else out.error
        else:
            error = out.reason.value if out.reason else None
        try:
            assert stored.id is not None
            await self.store.finish_action(stored.id, state, self.clock.now(), error)
        except Exception as exc:  # stays an intent; reconciled by read-back later
            logger.error("action %s %s: %s but the journal could not be updated (%s); it will be reconciled",
                         stored.kind, stored.subject, out.status.value, exc)  # fmt: skip
            self.monitor.loop.errors.labels("record", error_class(exc)).inc()

    def _count(self, action: Action, out: Outcome, cause: Reason) -> Outcome:
        label = cause if out.status in (OutcomeStatus.applied, OutcomeStatus.failed) else (out.reason or cause)
        self.monitor.loop.actions.labels(action.kind, label.value, out.status.value).inc()
        return out

    async def reconcile(self) -> list[ReconcileResult]:
        """Settle intents left unfinished (crash, kill -9, lost DB write) by reading back the real state.

        Applied -> `applied`; not applied -> `reconciled` (nothing is re-applied: the loop's next tick
        decides afresh); unreadable -> left as an intent for the next call. Each settlement is audited."""
        results: list[ReconcileResult] = []
        for rec in await self.store.unfinished_actions():
            if rec.id in self._inflight:
                continue  # our own in-flight action in this process, not a leftover
            executor = self._executors.get(rec.kind)
            if executor is None:
                logger.warning("unfinished %s intent %s: no executor registered for it yet", rec.kind, rec.subject)
                results.append(ReconcileResult(rec, None, None))
                continue
            try:
                rb = await executor.read_back(rec)
            except Exception as exc:
                logger.warning("unfinished %s intent %s: read-back failed (%s); will retry", rec.kind, rec.subject, exc)
                self.monitor.loop.errors.labels("reconcile", error_class(exc)).inc()
                results.append(ReconcileResult(rec, None, None))
                continue
            if rb.applied is None:
                results.append(ReconcileResult(rec, rb, None))
                continue
            state = ActionState.applied if rb.applied else ActionState.reconciled
            note = rb.note or ("took effect" if rb.applied else "did not take effect; not re-applied")
            now = self.clock.now()
            assert rec.id is not None
            await self.store.finish_action(rec.id, state, now, None if rb.applied else f"reconciled: {note}")
            await self.store.audit(AuditRecord(
                at=now, actor=self.replica or "empire", action="reconcile", subject=rec.subject,
                details={"key": rec.idempotency_key, "kind": rec.kind, "applied": rb.applied, "state": rb.state,
                         "note": note},
            ))  # fmt: skip
            self.monitor.loop.actions.labels(rec.kind, Reason.reconciled.value, state.value).inc()
            logger.info(
                "reconciled %s %s (key %s): %s, %s", rec.kind, rec.subject, rec.idempotency_key, state.value, note
            )
            results.append(ReconcileResult(rec, rb, state))
        return results
