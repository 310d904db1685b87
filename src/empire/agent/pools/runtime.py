"""The pools as one long-lived object inside `empire run`: adapters, dispatcher, holds, budgets.

`setup.py` wires this into the daemon; it is a class of its own so that the tests (and anything
else that embeds the pools) drive exactly what the daemon runs, on a fake clock if they like.

- Adapters are built per provider: a provider whose key cannot be resolved (a missing env var, a
  Secret the agent may not read) is left out with its error in `/status`, and its accounts are
  treated as drained (routing falls back, or jobs wait), instead of taking the other providers
  down with it. A policy reload rebuilds only the providers whose wire settings changed, so a
  reload does not drop the simulated provider's jobs in flight or an HTTP session's connections;
  replaced adapters are closed at shutdown (jobs in flight may still be using them).
- `refresh(now)` reads the holds (paused personas, drained accounts) and the spend from the state
  DB: every replica runs it, so every replica's dispatcher honours a hold the leader recorded,
  and every replica exports the budget gauges.
- `run()` runs the dispatcher until cancelled. Cancellation (SIGTERM) is turned into a graceful
  stop: no new claims, jobs in flight are given back (submitted ones keep their provider job id,
  so any replica resumes polling), pending transitions are flushed, within `grace` seconds. An
  unexpected crash of the dispatcher is logged and it starts again after a pause.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import anyio

from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.build import budget_limits, build_adapters
from empire.agent.pools.callbacks import CallbackStore
from empire.agent.pools.dispatcher import Dispatcher, DispatcherOptions
from empire.agent.pools.holds import Holds, HoldStore
from empire.agent.pools.jobs import Spend
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.providers.base import JobProvider
from empire.agent.pools.providers.http import CallbackHub
from empire.agent.pools.publish import ContentCatalog, ContentPublisher, ContentSink
from empire.agent.pools.queue import JobQueue
from empire.agent.ports import Clock, RateLimiter
from empire.config.secrets import SecretReader
from empire.errors import EmpireError
from empire.logrepeat import log_unless_reported
from empire.policies.generation import Provider
from empire.policies.schema import Policy

__all__ = ["PoolsRuntime"]

logger = logging.getLogger(__name__)


def _wire(p: Provider) -> str:
    """What an adapter is built from: a change here needs a new adapter."""
    accounts = [(a.name, a.enabled, a.api_key.describe() if a.api_key else None) for a in p.accounts]
    spec = p.http.model_dump(mode="json") if p.http is not None else p.simulated.model_dump(mode="json")
    return json.dumps([p.kind, spec, accounts], sort_keys=True, default=str)


class PoolsRuntime:
    def __init__(
        self,
        policy: Callable[[], Policy],
        catalog: ContentCatalog,
        clock: Clock,
        limiter: RateLimiter,
        options: DispatcherOptions,
        sink: ContentSink | None,
        *,
        metrics: PoolMetrics | None = None,
        secrets: SecretReader | None = None,
        env: Mapping[str, str] | None = None,
        paused: Callable[[], bool] | None = None,
        refresh_every: float = 5.0,
        holds: HoldStore,
        callbacks: CallbackStore,
        queue: JobQueue,
    ) -> None:
        self.policy = policy
        self.catalog = catalog
        self.clock = clock
        self.limiter = limiter
        self.metrics = metrics
        self.secrets = secrets
        self.env = env
        self.refresh_every = refresh_every
        self.hubs: dict[str, CallbackHub] = {}
        self.callbacks = callbacks
        self.adapter_errors: dict[str, str] = {}
        self._wires: dict[str, str] = {}
        self._retired: list[JobProvider] = []
        pol = policy()
        adapters = self._adapters(pol.providers, {})
        if metrics is not None:
            metrics.configure(pol.providers, [p.name for p in pol.personas])
        self.queue = queue
        queue.limits = budget_limits(pol)
        self.publisher = None
        if sink is not None:  # None: record results only (`empire pools run --no-publish`)
            self.publisher = ContentPublisher(catalog, sink, lambda: self.policy().compliance, clock,
                                              metrics.on_content if metrics else None, enqueue=queue.enqueue,
                                              platforms=self._platforms)  # fmt: skip
        self.dispatcher = Dispatcher(pol.providers, adapters, self.queue, limiter, options, metrics=metrics,
                                     publisher=self.publisher, clock=clock)  # fmt: skip
        self.dispatcher.paused = paused
        self.holds_store = holds
        self.holds = Holds()
        self.spend: Spend | None = None
        self.running = False
        self.crashes = 0
        self.apply_holds(self.holds)

    def _platforms(self, persona: str) -> tuple[str, ...]:
        return next((p.platforms for p in self.policy().personas if p.name == persona), ())

    # -- adapters and policy ---------------------------------------------------------------
    def _adapters(self, providers: tuple[Provider, ...], current: Mapping[str, JobProvider]) -> dict[str, JobProvider]:
        out: dict[str, JobProvider] = {}
        for p in providers:
            wire = _wire(p)
            if p.name in current and self._wires.get(p.name) == wire:
                out[p.name] = current[p.name]
                continue
            hub = None
            if p.kind == "http":
                hub = self.hubs.setdefault(p.name, CallbackHub(lookup=self.callbacks.lookup))
            try:
                out[p.name] = build_adapters((p,), self.clock, self.env, self.secrets, hub)[p.name]
            except EmpireError as exc:  # ConfigError naming the secret reference, or reading it failed
                self.adapter_errors[p.name] = str(exc)
                self._wires.pop(p.name, None)
                logger.error("provider %s unavailable, its accounts get no jobs: %s", p.name, exc)
                continue
            self.adapter_errors.pop(p.name, None)
            self._wires[p.name] = wire
            if p.name in current:
                self._retired.append(current[p.name])
        for name in set(self.adapter_errors) - {p.name for p in providers}:
            del self.adapter_errors[name]
        return out

    def unavailable(self) -> frozenset[str]:
        """Accounts of providers without an adapter ("provider/account")."""
        return frozenset(f"{p.name}/{a.name}" for p in self.policy().providers if p.name in self.adapter_errors
                         for a in p.accounts)  # fmt: skip

    def apply_policy(self, pol: Policy) -> None:
        """A reloaded policy: limits, routing, budgets and changed providers at once."""
        adapters = self._adapters(pol.providers, self.dispatcher.adapters)
        for name in [n for n in self.dispatcher.adapters if n not in adapters]:
            self._retired.append(self.dispatcher.adapters.pop(name))
        self.dispatcher.update_policy(pol.providers, adapters, budget_limits(pol))
        if self.metrics is not None:
            self.metrics.configure(pol.providers, [p.name for p in pol.personas])
        self.apply_holds(self.holds)

    @property
    def limits(self) -> BudgetLimits:
        return self.queue.limits

    # -- holds and budgets ----------------------------------------------------------------------
    def apply_holds(self, holds: Holds) -> None:
        self.holds = holds
        self.queue.held_personas = holds.personas
        self.dispatcher.set_drained(holds.accounts | self.unavailable())
        if self.metrics is not None:
            self.metrics.on_holds(holds.personas, holds.accounts)

    async def refresh(self, now: datetime) -> None:
        """Holds and spend from the state DB (every replica, every `refresh_every` seconds)."""
        self.apply_holds(await self.holds_store.active())
        self.spend = await self.queue.spend(now)
        if self.metrics is not None:
            self.metrics.on_budget(self.queue.limits, self.spend)

    async def refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh(self.clock.now())
            except Exception as exc:  # the DB may be down for a while: keep the last known holds
                log_unless_reported(logger, exc, "pools: holds and spend not refreshed: %s", exc)
            await anyio.sleep(self.refresh_every)

    # -- running ------------------------------------------------------------------------------
    async def run(self, grace: float = 10.0, restart_after: float = 5.0) -> None:
        """Run the dispatcher until cancelled, then stop it gracefully (see the module docstring)."""
        try:
            await self.refresh(self.clock.now())  # honour holds before the first claim
        except Exception as exc:
            logger.warning("pools: holds not read before the first claim: %s", exc)
        while True:
            finished = anyio.Event()
            inner = anyio.CancelScope(shield=True)
            crashed: list[BaseException] = []

            async def carry(scope: anyio.CancelScope = inner, done: anyio.Event = finished,
                            errors: list[BaseException] = crashed) -> None:  # fmt: skip
                try:
                    with scope:
                        await self.dispatcher.run()
                except Exception as exc:
                    errors.append(exc)
                finally:
                    done.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(carry)
                self.running = True
                try:
                    await finished.wait()
                finally:
                    self.running = False
                    if not finished.is_set():  # cancelled from outside: shutdown
                        self.dispatcher.stop()
                        with anyio.CancelScope(shield=True):
                            with anyio.move_on_after(grace):
                                await finished.wait()
                            inner.cancel()
            if not crashed:
                return
            self.crashes += 1
            logger.error("pools: the dispatcher stopped unexpectedly (%s); starting it again in %gs",
                         crashed[0], restart_after, exc_info=crashed[0])  # fmt: skip
            await anyio.sleep(restart_after)

    async def aclose(self) -> None:
        self.dispatcher.stop()
        await self.dispatcher.aclose()
        for adapter in self._retired:
            try:
                await adapter.aclose()
            except Exception as exc:
                logger.warning("closing provider %s failed: %s", adapter.name, exc)
        self._retired.clear()

    def status(self) -> dict[str, Any]:
        d = self.dispatcher
        return {
            "dispatcher": {"owner": d.opt.owner, "running": self.running, "busy": d._busy, "stats": dict(d.stats),
                           "crashes": self.crashes, "claiming": not (d.paused is not None and d.paused())},
            "providers": {p.name: ("unavailable: " + self.adapter_errors[p.name]) if p.name in self.adapter_errors
                          else "ok" for p in self.policy().providers},
            "paused_personas": sorted(self.holds.personas),
            "drained_accounts": sorted(self.holds.accounts),
            "breakers": d.breakers(),
            "spend": {"day": self.spend.day, "month": self.spend.month} if self.spend else None,
        }  # fmt: skip
