"""`ControlLoop`: the only orchestration. Each tick: observe -> decide -> stabilize -> execute -> record.

Why this shape:

* `await loop.tick()` runs one full cycle at `clock.now()` and returns the decisions, so tests and
  the backtest drive the loop step by step on a `FakeClock` (no wall-clock sleeps anywhere);
  `run()` is just `tick()` in a loop with an interruptible sleep (a policy reload wakes it).
* Each target runs inside its own guard: an exception is logged, counted in
  `empire_loop_errors_total{stage}` and the other targets carry on. Observation problems never
  raise at all: an unreadable workload becomes "current unknown" (never act blind), a failed
  metric source becomes `source_ok=False` (hold, then fallback).
* Decisions are written before their actions, actions go through the journaling `ActionRunner`
  (intent -> execute -> applied/failed), and a decision that could not be written does not stop
  the action from being journaled on its own (its `decision_id` is then empty).
* Leadership is checked at the start of every tick; a standby replica observes nothing and acts
  on nothing, and the runner re-checks before each action.
* The stabilization history (recommendations and scale events) is kept in memory per target and
  rebuilt from the journal at start, so a restart neither forgets a scale-down window nor lets a
  rate limit reset.
* With a `state_health` (`empire.state.health.StateHealth`), each tick starts by probing the state
  database. While it is down, decisions are still computed and logged but every action is held
  (the runner checks the same health), and failures it already reported are logged at DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio

from empire.agent.deciding import decide, keep_for
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.agent.ports import Clock, LeaderElection, Observer, StateStore, WorkloadReader
from empire.agent.records import ActionState, AuditRecord, DecisionRecord, jsonable
from empire.agent.scheduler import PeriodicJobs
from empire.agent.stabilizing import ScaleEvent, TargetHistory
from empire.agent.types import Decision, Forecast, Observation, Outcome, OutcomeStatus, ScaleTo, error_class
from empire.logrepeat import log_unless_reported
from empire.policies.loading import LoadedPolicy
from empire.policies.scaling import Target

__all__ = ["ControlLoop", "Forecaster", "TargetStatus"]

logger = logging.getLogger(__name__)

Forecaster = Callable[[Target, datetime], Awaitable[Forecast | None]]
"""The predictive seam (issue 5): demand forecast for a target at `now`, or None."""


@dataclass
class TargetStatus:
    decision: Decision | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class ControlLoop:
    def __init__(
        self,
        *,
        policy: LoadedPolicy,
        observer: Observer,
        workloads: WorkloadReader,
        runner: ActionRunner,
        store: StateStore,
        clock: Clock,
        monitor: Monitor | None = None,
        leader: LeaderElection | None = None,
        replica: str | None = None,
        dry_run: bool = False,
        jobs: PeriodicJobs | None = None,
        drive_jobs: bool = False,
        forecaster: Forecaster | None = None,
        concurrency: int = 16,
        state_health: Any = None,
    ) -> None:
        self._policy = policy
        self.observer, self.workloads, self.runner, self.store = observer, workloads, runner, store
        self.clock = clock
        self.monitor = monitor or runner.monitor
        self.leader = leader
        self.replica = replica
        self.force_dry_run = dry_run
        self.jobs = jobs
        self.drive_jobs = drive_jobs
        self.forecaster = forecaster
        self.state_health = state_health
        self.histories: dict[str, TargetHistory] = {}
        self.status: dict[str, TargetStatus] = {}
        # called with each tick's decisions (the status page's history ring); one failing is logged
        self.tick_listeners: list[Callable[[list[Decision]], None]] = []
        self.started = False
        self.is_leader = False
        self.last_tick_at: datetime | None = None
        self.last_tick_wall: float | None = None
        self.ticks = 0
        self._tick_over = anyio.Event()  # set while no tick runs (`outside_tick`)
        self._tick_over.set()
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._wake = anyio.Event()
        self._policy_saved: str | None = None
        self._reconcile_pending = True
        self._source_errors: dict[str, str] = {}
        self._source = str(getattr(observer, "source", type(observer).__name__.removesuffix("Observer").lower()))
        self.runner.dry_run = self.dry_run
        if leader is not None and runner.leader is None:
            runner.leader = leader

    # -- policy ---------------------------------------------------------------------------
    @property
    def policy(self) -> LoadedPolicy:
        return self._policy

    @property
    def dry_run(self) -> bool:
        return self.force_dry_run or self._policy.policy.loop.dry_run

    @property
    def interval(self) -> float:
        return self._policy.policy.loop.interval.total_seconds()

    def set_policy(self, loaded: LoadedPolicy) -> None:
        """Swap the policy (a PolicyWatcher callback); the next tick uses it, and it starts now."""
        names = {t.name for t in loaded.policy.targets}
        for gone in set(self.histories) - names:
            self.histories.pop(gone, None)
            self.status.pop(gone, None)
            self.monitor.loop.forget_target(gone)
            self._source_errors.pop(gone, None)
        self._policy = loaded
        self.runner.dry_run = self.dry_run
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    # -- start ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Rebuild stabilization histories from the journal and reconcile unfinished intents."""
        now = self.clock.now()
        for target in self._policy.policy.targets:
            try:
                self.histories[target.name] = await self._restore_history(target, now)
            except Exception as exc:
                logger.warning("could not restore the history of %s: %s", target.name, exc)
        self.started = True

    async def _restore_history(self, target: Target, now: datetime) -> TargetHistory:
        window, period = keep_for(target)
        limit = int(min(2000, window / max(self.interval, 1.0) * 2 + 10))
        recs = []
        for d in await self.store.recent_decisions(target.name, limit=limit):
            value = d.details.get("window_value") if isinstance(d.details, dict) else None
            if isinstance(value, int) and (now - d.at).total_seconds() < window:
                recs.append((d.at, value))
        events, last_up = [], None
        for a in await self.store.recent_actions(target.name, limit=100):
            if a.kind != ScaleTo.kind or a.state != ActionState.applied:
                continue
            change = int(a.params.get("replicas", 0)) - int(a.params.get("current") or 0)
            if change > 0 and (last_up is None or a.created_at > last_up):
                last_up = a.created_at
            if (now - a.created_at).total_seconds() < period and change:
                events.append(ScaleEvent(a.created_at, change))
        recs.sort()
        events.sort(key=lambda e: e.at)
        if recs or events:
            logger.info("restored %s: %d recommendations, %d scale events from the journal",
                        target.name, len(recs), len(events))  # fmt: skip
        return TargetHistory(tuple(recs), tuple(events), 0, last_up)

    # -- one tick -------------------------------------------------------------------------
    async def tick(self) -> list[Decision]:
        self._tick_over = anyio.Event()
        try:
            return await self._tick()
        finally:
            self._tick_over.set()

    async def outside_tick(self, limit: float) -> None:
        """Return once no tick is running, or after `limit` seconds: the HTTP API lets the control
        loop go first (`http.Admission`), so a flood of requests cannot make a tick wait."""
        if not self._tick_over.is_set():
            with anyio.move_on_after(limit):
                await self._tick_over.wait()

    async def _tick(self) -> list[Decision]:
        if not self.started:
            await self.start()
        now = self.clock.now()
        wall = time.perf_counter()
        metrics = self.monitor.loop
        metrics.ticks.inc()
        leading = await self._ensure_leader()
        if self.is_leader and not leading:
            await self._journal_lost_leadership(now)
        if leading and not self.is_leader:
            # Taking over (again): the replica that led meanwhile may have died between an intent
            # and its outcome. Read those back before acting, even if this replica reconciled once.
            self._reconcile_pending = True
        self.is_leader = leading
        metrics.leader.set(1 if self.is_leader else 0)
        if self.state_health is not None:
            await self.state_health.check()
        decisions: list[Decision] = []
        if self.is_leader:
            await self._save_policy(now)
            if self._reconcile_pending:
                await self._reconcile()
            targets = self._policy.policy.targets

            async def one(t: Target) -> None:
                async with self._limiter:
                    d = await self._tick_target(t, now)
                    if d is not None:
                        decisions.append(d)

            if len(targets) == 1:  # no task group for one target (the backtest's 86,400 ticks)
                await one(targets[0])
            else:
                async with anyio.create_task_group() as tg:
                    for target in targets:
                        tg.start_soon(one, target)
            order = {t.name: i for i, t in enumerate(targets)}
            decisions.sort(key=lambda d: order.get(d.target, 0))
            if targets:  # one value per source per tick: down if any target's observation failed
                metrics.source_up.labels(self._source).set(0 if self._source_errors else 1)
            for listener in self.tick_listeners:
                try:
                    listener(decisions)
                except Exception:
                    logger.exception("a tick listener failed")
        if self.jobs is not None and self.drive_jobs:
            await self.jobs.run_due(now)
        self.ticks += 1
        self.last_tick_at = now
        self.last_tick_wall = time.monotonic()
        metrics.tick_duration.observe(time.perf_counter() - wall)
        metrics.last_tick.set(now.timestamp())
        return decisions

    async def _ensure_leader(self) -> bool:
        if self.leader is None:
            return True
        try:
            return await self.leader.ensure()
        except Exception as exc:
            logger.error("leader election failed (%s): not acting this tick", exc)
            self.monitor.loop.errors.labels("leader", error_class(exc)).inc()
            return False

    async def _journal_lost_leadership(self, now: datetime) -> None:
        """An audit row saying why this replica stopped acting (the lock file was replaced, the
        lease was taken, the database session ended): the log line scrolls away, the journal stays."""
        assert self.leader is not None
        details = {"reason": self.leader.reason or "unknown"}
        try:
            await self.store.audit(AuditRecord(now, self.replica, "leader_lost", self.leader.name, details))
        except Exception as exc:
            logger.warning("could not journal the lost leadership: %s", exc)
            self.monitor.loop.errors.labels("record", error_class(exc)).inc()

    async def _save_policy(self, now: datetime) -> None:
        loaded = self._policy
        if self._policy_saved == loaded.version:
            return
        try:
            body = loaded.policy.model_dump(mode="json")
            await self.store.save_policy_version(loaded.version, loaded.source, body, now)
            self._policy_saved = loaded.version
        except Exception as exc:
            log_unless_reported(logger, exc, "could not record policy version %s: %s", loaded.version, exc)
            self.monitor.loop.errors.labels("record", error_class(exc)).inc()

    async def _reconcile(self) -> None:
        try:
            results = await self.runner.reconcile()
            self._reconcile_pending = any(r.settled_as is None for r in results)
        except Exception as exc:
            log_unless_reported(logger, exc, "reconciliation of unfinished intents failed: %s; will retry", exc)
            self.monitor.loop.errors.labels("reconcile", error_class(exc)).inc()

    async def observe(self, target: Target, now: datetime) -> Observation:
        """Workload state and signals; never raises (failures become fields of the Observation)."""
        metrics = self.monitor.loop
        current = ready = None
        annotations: dict[str, str] = {}
        conflicts: tuple[str, ...] = ()
        try:
            wl = await self.workloads.workload(target)
            current, ready, annotations, conflicts = wl.replicas, wl.ready_replicas, wl.annotations, wl.conflicts
        except Exception as exc:
            logger.warning("%s: cannot read workload %s/%s: %s", target.name, target.workload.namespace,
                           target.workload.name, exc)  # fmt: skip
            metrics.errors.labels("workload", error_class(exc)).inc()
        try:
            samples = await self.observer.observe(target, now)
        except Exception as exc:
            metrics.errors.labels("observe", error_class(exc)).inc()
            first = self._source_errors.get(target.name) != str(exc)
            self._source_errors[target.name] = str(exc)
            (logger.warning if first else logger.debug)("%s: metric source unavailable: %s", target.name, exc)
            return Observation(target.name, now, (), current, ready, False, str(exc), annotations, conflicts)
        if self._source_errors.pop(target.name, None) is not None:
            logger.info("%s: metric source available again", target.name)
        for s in samples:
            metrics.record_signal(target, s)
        return Observation(target.name, now, samples, current, ready, True, None, annotations, conflicts)

    async def _tick_target(self, target: Target, now: datetime) -> Decision | None:
        metrics = self.monitor.loop
        status = self.status.setdefault(target.name, TargetStatus())
        stage = "observe"
        try:
            obs = await self.observe(target, now)
            forecast = None
            if self.forecaster is not None:
                try:
                    forecast = await self.forecaster(target, now)
                except Exception as exc:
                    logger.warning("%s: forecast unavailable: %s", target.name, exc)
            stage = "decide"
            history = self.histories.get(target.name, TargetHistory())
            decided = decide(target, obs, history, now, forecast, self.dry_run)
            decision = decided.decision
            self.histories[target.name] = decided.history
            for r in decision.reasons:
                metrics.decisions.labels(target.name, r.value).inc()
            metrics.record_replicas(target, decision.current, decision.desired, bool(obs.conflicts))
            logger.info("decision %s: current %s recommended %s desired %s (%s)", target.name, decision.current,
                        decision.recommended, decision.desired, ", ".join(r.value for r in decision.reasons))  # fmt: skip
            stage = "record"
            window_value = decided.history.recommendations[-1][1] if decided.history.recommendations else None
            recorded_now = bool(decided.history.recommendations) and decided.history.recommendations[-1][0] == now
            decision_id = await self._record(decision, window_value if recorded_now else None)
            stage = "execute"
            outcomes = []
            for action in decision.actions:
                out = await self.runner.run(action, decision_id, at=now)
                outcomes.append({"kind": action.kind, "status": out.status.value,
                                 "reason": out.reason.value if out.reason else None, "error": out.error})  # fmt: skip
                self._after(target, action, out, now)
            status.decision, status.outcomes, status.error = decision, outcomes, None
            return decision
        except Exception as exc:
            log_unless_reported(logger, exc, "%s: tick failed at %s; the other targets carry on: %s", target.name,
                                stage, exc, level=logging.ERROR, traceback=True)  # fmt: skip
            metrics.errors.labels(stage, error_class(exc)).inc()
            status.error = f"{stage}: {type(exc).__name__}: {exc}"
            return None

    async def _record(self, d: Decision, window_value: int | None) -> int | None:
        details = dict(d.details)
        if window_value is not None:
            details["window_value"] = window_value
        rec = DecisionRecord(
            target=d.target, at=d.at, current=d.current, recommended=d.recommended, desired=d.desired,
            reasons=tuple(r.value for r in d.reasons), details=jsonable(details),
            policy_version=self._policy.version, replica=self.replica, dry_run=d.dry_run,
        )  # fmt: skip
        try:
            return await self.store.record_decision(rec)
        except Exception as exc:
            log_unless_reported(
                logger, exc, "%s: decision not recorded (%s); its actions are still journaled", d.target, exc
            )
            self.monitor.loop.errors.labels("record", error_class(exc)).inc()
            return None

    def _after(self, target: Target, action: Any, out: Outcome, now: datetime) -> None:
        if not isinstance(action, ScaleTo) or action.current is None:
            return
        simulated = out.status == OutcomeStatus.skipped and out.state.get("simulated")
        if out.status == OutcomeStatus.applied or simulated:
            _, period = keep_for(target)
            h = self.histories.get(target.name, TargetHistory())
            self.histories[target.name] = h.scaled(now, action.current, action.replicas, timedelta(seconds=period))

    # -- running --------------------------------------------------------------------------
    async def sleep(self, seconds: float) -> None:
        """Sleep on the loop's clock, returning early when `wake()` is called."""
        if self._wake.is_set():
            self._wake = anyio.Event()
            return
        async with anyio.create_task_group() as tg:

            async def waker() -> None:
                await self._wake.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(waker)
            await self.clock.sleep(seconds)
            tg.cancel_scope.cancel()
        if self._wake.is_set():
            self._wake = anyio.Event()

    async def run(self, ticks: int | None = None) -> None:
        """Tick every `policy.loop.interval` until cancelled (or `ticks` times)."""
        n = 0
        while ticks is None or n < ticks:
            started = self.clock.now()
            try:
                await self.tick()
            except Exception:
                logger.exception("tick failed; continuing")
                self.monitor.loop.errors.labels("decide", "internal").inc()
            n += 1
            if ticks is not None and n >= ticks:
                break
            elapsed = (self.clock.now() - started).total_seconds()
            await self.sleep(max(0.0, self.interval - elapsed))

    def snapshot(self) -> dict[str, Any]:
        """The `/status` body."""
        targets = {}
        for t in self._policy.policy.targets:
            st = self.status.get(t.name)
            d = st.decision if st else None
            targets[t.name] = {
                "at": d.at.isoformat() if d else None, "current": d.current if d else None,
                "recommended": d.recommended if d else None, "desired": d.desired if d else None,
                "reasons": [r.value for r in d.reasons] if d else [], "dry_run": d.dry_run if d else None,
                "conflicts": list(d.details.get("conflicts") or []) if d else [],
                "actions": st.outcomes if st else [], "error": st.error if st else None,
            }  # fmt: skip
        return {
            "replica": self.replica, "leader": self.is_leader,
            "leader_election": getattr(self.leader, "name", "single"),
            "policy_version": self._policy.version, "policy_source": self._policy.source, "dry_run": self.dry_run,
            "interval_seconds": self.interval, "ticks": self.ticks,
            "last_tick_at": self.last_tick_at.isoformat() if self.last_tick_at else None, "targets": targets,
        }  # fmt: skip
