"""The generation planner as the daemon runs it: a periodic job (leader only, every `loop.interval`).

Each run reads what the pure planner needs from the state DB (jobs already planned in each
persona's window, spend, queued cost, the holds), calls the pure planner the policy's
`spending.strategy` names, and hands every `Generate` action to the one `ActionRunner` (journal
with its reasons, execute, count). Planning every tick is idempotent: a window that already has
its jobs asks for nothing.

- `cadence` (default): `plan_generation`, every persona its cadence in its own window;
- `returns`: `plan_by_returns`, the cadences' money for the UTC day spent by the allocator, which
  learns from the published tracks' revenue (the `RevenueSource`: the content inventory, fed by
  the revenue ingest endpoint and `empire content import`; re-read every 15 minutes). Each
  action's journal row carries the evidence per genre (`allocation`), which `empire explain
  persona/NAME` prints. Without a revenue source it falls back to `cadence` (said in `/status`).

Held-back work (a paused persona, a budget that would be passed) is journaled too, as a
`generate` row in state `skipped` whose reason is the hold (`persona_paused`, `budget_deferred`,
`budget_exhausted`), once per window, reason and count (the idempotency key carries all three),
so `empire explain`-style questions ("why was nothing generated for luna-waves today?") have an
answer in the journal. It is also in `/status` ("pools.planner.held") and in the gauge
`empire_generation_held{persona,reason}`. These rows are written straight to the journal rather
than through the runner: nothing is executed for them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from empire.agent.pools.build import plan_inputs, returns_inputs
from empire.agent.pools.holds import HoldKind, Holds, HoldStore
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.planner import GenerationPlan, HeldBack, batch_id, plan_generation, window_start
from empire.agent.pools.queue import JobQueue
from empire.agent.pools.revenue import PublishedTrack, RevenueSource
from empire.agent.pools.spending import DAY, plan_by_returns
from empire.agent.ports import StateStore
from empire.agent.records import ActionRecord, ActionState
from empire.agent.types import Action, Generate, Outcome, action_key
from empire.policies.generation import Persona
from empire.policies.schema import Policy

__all__ = ["GenerationPlanner"]

logger = logging.getLogger(__name__)

REREAD = timedelta(minutes=15)

RunAction = Callable[[Action, datetime], Awaitable[Outcome]]


class GenerationPlanner:
    """`await planner(now)`: one planning pass. `last` describes it for `/status`."""

    def __init__(
        self,
        queue: JobQueue,
        holds: HoldStore,
        policy: Callable[[], Policy],
        run: RunAction,
        store: StateStore,
        *,
        metrics: PoolMetrics | None = None,
        count_skipped: Callable[[str], None] | None = None,
        replica: str | None = None,
        trend: Callable[[datetime], Mapping[str, float]] | None = None,
        on_holds: Callable[[Holds], None] | None = None,
        catalog: RevenueSource | None = None,
    ) -> None:
        self.queue = queue
        self.holds = holds
        self.policy = policy
        self.run = run
        self.store = store
        self.metrics = metrics
        self.count_skipped = count_skipped  # empire_actions_total{kind="generate", reason, result="skipped"}
        self.replica = replica
        self.trend = trend
        self.on_holds = on_holds
        self.catalog = catalog  # published tracks and their revenue: the `returns` strategy reads it
        self._tracks: list[PublishedTrack] = []
        self._published_at: datetime | None = None
        self._losing_reported: datetime | None = None
        self.last: dict[str, Any] | None = None

    async def __call__(self, now: datetime) -> GenerationPlan:
        pol = self.policy()
        holds = await self.holds.active()
        if self.on_holds is not None:
            self.on_holds(holds)
        trend = self.trend(now) if self.trend is not None else None
        spending: dict[str, Any] = {"strategy": pol.spending.strategy}
        if pol.spending.strategy == "returns" and self.catalog is not None:
            inputs = await returns_inputs(self.queue, await self._published(pol, now), pol, now)
            plan, summary = plan_by_returns(pol.personas, now, policy=pol.spending, trend=trend, paused=holds.personas,
                                            **inputs)  # fmt: skip
            returns = summary.pop("returns")  # per persona: for the metrics, not for /status
            spending.update(summary, tracks_read=len(inputs["returns"]))
            self._report_losing(summary["losing"], now)
            if pol.spending.pause_losing:
                await self._pause_losing(summary["losing"], holds, now)
            if self.metrics is not None:
                revenue: dict[str, float] = {}
                for t in inputs["returns"]:
                    revenue[t.persona] = revenue.get(t.persona, 0.0) + t.revenue
                self.metrics.on_returns(returns, revenue, {x["persona"] for x in summary["losing"]},
                                        [(a.persona, g["reason"], g["count"]) for a in plan.actions
                                         for g in a.allocation])  # fmt: skip
            window: Callable[[Persona], timedelta] = lambda _p: DAY  # noqa: E731
        else:
            if pol.spending.strategy == "returns":
                spending["fallback"] = "no content catalog to read revenue from: cadence"
            inputs = await plan_inputs(self.queue, pol, now)
            plan = plan_generation(pol.personas, now, trend=trend, paused=holds.personas, **inputs)
            window = lambda p: p.cadence.every  # noqa: E731
        done: list[dict[str, Any]] = []
        for action in plan.actions:
            out = await self.run(action, now)
            done.append({"persona": action.persona, "count": action.count, "batch": action.batch,
                         "first": action.first, "reasons": [r.value for r in action.reasons],
                         **({"allocation": list(action.allocation)} if action.allocation else {}),
                         "result": out.status.value, **({"error": out.error} if out.error else {})})  # fmt: skip
        await self._journal_held(plan.held, pol, now, inputs["planned"], window)
        if self.metrics is not None:
            self.metrics.on_held((h.persona, h.reason, h.count) for h in plan.held)
        self.last = {
            "at": now.isoformat(),
            "actions": done,
            "held": [{"persona": h.persona, "reason": h.reason.value, "count": h.count} for h in plan.held],
            "projected_spend_today": round(plan.projected_spend, 6),
            "paused_personas": sorted(holds.personas),
            "spending": spending,
        }
        if plan.actions or plan.held:
            logger.info("generation plan: %s", "; ".join(
                [f"{a.persona} +{a.count} ({', '.join(r.value for r in a.reasons)})" for a in plan.actions]
                + [f"{h.persona} {h.count} held ({h.reason.value})" for h in plan.held]
            ))  # fmt: skip
        return plan

    async def _pause_losing(self, losing: list[dict[str, Any]], holds: Holds, now: datetime) -> None:
        """`spending.pause_losing`: a losing persona goes on hold (source "spending") with its evidence,
        through the same durable, audited holds as an alert's `pause_persona`; from the next plan on
        its cadence is held back (`persona_paused`) until an operator releases it."""
        for x in losing:
            if x["persona"] in holds.personas:
                continue
            # the holds' reason column holds 64 characters
            why = f"losing: {x['return_per_dollar']:.3g}/$ +- {x['uncertainty']:.2g} on {x['tracks']:.0f} tracks"[:64]
            try:
                if await self.holds.set(HoldKind.persona, x["persona"], "spending", True, reason=why,
                                        actor="planner", at=now):  # fmt: skip
                    logger.warning("persona %s paused: %s", x["persona"], why)
            except Exception as exc:  # the hold store being down must not stop the plan
                logger.warning("could not pause losing persona %s: %s", x["persona"], exc)

    def _report_losing(self, losing: list[dict[str, Any]], now: datetime) -> None:
        """Once per UTC day: the personas that keep losing money, with the evidence."""
        day = window_start(now, DAY)
        if losing and self._losing_reported != day:
            self._losing_reported = day
            logger.warning("personas losing money (revenue per dollar, +- sd, on matured tracks): %s", "; ".join(
                f"{x['persona']} {x['return_per_dollar']} +- {x['uncertainty']} on {x['tracks']}" for x in losing
            ))  # fmt: skip

    async def _published(self, pol: Policy, now: datetime) -> list[PublishedTrack]:
        """The catalog's tracks and revenue, re-read at most every `REREAD` (revenue is reported
        daily at best; the planner ticks every few seconds)."""
        assert self.catalog is not None
        at = self._published_at
        if at is None or not (at <= now < at + REREAD):
            names = [p.name for p in pol.personas]
            self._tracks = await self.catalog.published_since(now - pol.spending.lookback, names)
            self._published_at = now
        return self._tracks

    async def _journal_held(
        self,
        held: tuple[HeldBack, ...],
        pol: Policy,
        now: datetime,
        planned: Mapping[str, int],
        window: Callable[[Persona], timedelta],
    ) -> None:
        personas = {p.name: p for p in pol.personas}
        for h in held:
            p = personas.get(h.persona)
            if p is None:
                continue
            start = window_start(now, window(p))
            batch = batch_id(start)
            action = Generate(h.persona, h.count, p.priority.value, (h.reason,), p.providers, p.genres, batch,
                              planned.get(h.persona, 0))  # fmt: skip
            key = action_key(action.kind, action.subject, start,
                             f"held-{h.reason.value}-{h.count}")  # fmt: skip
            try:
                if await self.store.action_by_key(key) is not None:
                    continue  # this window's hold with this reason and count is journaled already
                params = {**action.params(), "reasons": [h.reason.value], "held": True}
                rec = await self.store.write_intent(ActionRecord(
                    idempotency_key=key, kind=action.kind, subject=action.subject, params=params,
                    reason=h.reason.value, state=ActionState.intent, created_at=now, updated_at=now,
                    replica=self.replica,
                ))  # fmt: skip
                if rec.id is not None and rec.state is ActionState.intent:
                    await self.store.finish_action(rec.id, ActionState.skipped, now, h.reason.value)
            except Exception as exc:  # the journal being down must not stop the plan
                logger.warning("could not journal held-back generation for %s: %s", h.persona, exc)
                continue
            if self.count_skipped is not None:
                self.count_skipped(h.reason.value)
            logger.info("generation for %s: %d tracks held back (%s)", h.persona, h.count, h.reason.value)
