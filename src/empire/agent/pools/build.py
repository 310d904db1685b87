"""Assembling the pools from a policy: provider adapters (keys resolved), the limiter, the dispatcher.

The one place that turns configuration into live objects, so the daemon, `empire pools run`, the
tests and the benchmark build the dispatcher the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from empire.agent.clock import SystemClock
from empire.agent.pools.bucket import LocalLimiter
from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.dispatcher import Dispatcher, DispatcherOptions, Publisher
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.planner import batch_id, key_prefix, window_start
from empire.agent.pools.providers.base import JobProvider
from empire.agent.pools.providers.http import CallbackHub, HttpJobProvider
from empire.agent.pools.providers.simulated import SimulatedProvider
from empire.agent.pools.queue import JobQueue
from empire.agent.pools.revenue import PublishedTrack, track_returns
from empire.agent.pools.spending import DAY
from empire.agent.ports import Clock, RateLimiter
from empire.config.secrets import SecretReader, resolve_secret
from empire.errors import ConfigError
from empire.policies.common import SecretRef
from empire.policies.generation import Provider
from empire.policies.schema import Policy

__all__ = ["budget_limits", "build_adapters", "build_dispatcher", "plan_inputs", "returns_inputs"]


def build_adapters(
    providers: tuple[Provider, ...],
    clock: Clock | None = None,
    env: Mapping[str, str] | None = None,
    kubernetes: SecretReader | None = None,
    callbacks: CallbackHub | None = None,
    max_connections: int = 64,
) -> dict[str, JobProvider]:
    """One adapter per provider. HTTP providers need every enabled account's key resolvable."""
    clock = clock or SystemClock()
    out: dict[str, JobProvider] = {}
    for p in providers:
        if p.kind == "simulated":
            out[p.name] = SimulatedProvider(p.name, p.simulated, clock, tuple(a.name for a in p.accounts))
            continue
        assert p.http is not None
        refs = {a.name: a.api_key for a in p.accounts if a.enabled}
        keys: dict[str, SecretStr | None] = {
            name: resolve_secret(ref, env, kubernetes) if ref is not None else None for name, ref in refs.items()
        }

        def reload_key(account: str, refs: dict[str, SecretRef | None] = refs) -> SecretStr:
            ref = refs.get(account)
            if ref is None:
                raise ConfigError(f"account {account!r} has no api_key reference")
            return resolve_secret(ref, env, kubernetes)

        out[p.name] = HttpJobProvider(p.name, p.http, keys, callbacks=callbacks, max_connections=max_connections,
                                      reload_key=reload_key)  # fmt: skip
    return out


def budget_limits(policy: Policy) -> BudgetLimits:
    return BudgetLimits.from_policy(policy.providers, policy.budget)


def build_dispatcher(
    policy: Policy,
    queue: JobQueue,
    options: DispatcherOptions,
    limiter: RateLimiter | None = None,
    metrics: PoolMetrics | None = None,
    publisher: Publisher | None = None,
    adapters: Mapping[str, JobProvider] | None = None,
    clock: Clock | None = None,
) -> Dispatcher:
    if metrics is not None:
        metrics.configure(policy.providers, [p.name for p in policy.personas])
    queue.limits = budget_limits(policy)
    return Dispatcher(
        policy.providers,
        adapters if adapters is not None else build_adapters(policy.providers, clock),
        queue,
        limiter or LocalLimiter(),
        options,
        metrics=metrics,
        publisher=publisher,
        clock=clock,
    )


async def plan_inputs(queue: JobQueue, policy: Policy, now: datetime) -> dict[str, Any]:
    """What `plan_generation` needs from the state DB: jobs already planned in each persona's
    current window, spend (succeeded + reserved) and the estimated cost of the queued jobs.
    Usage: `plan_generation(policy.personas, now, trend=..., **await plan_inputs(queue, policy, now))`."""
    planned = {
        p.name: await queue.count_prefix(key_prefix(p.name, batch_id(window_start(now, p.cadence.every))))
        for p in policy.personas
    }
    return {
        "planned": planned,
        "limits": queue.limits,
        "spend": await queue.spend(now),
        "queued_cost": await queue.queued_cost(),
    }


async def returns_inputs(
    queue: JobQueue, tracks: Sequence[PublishedTrack], policy: Policy, now: datetime
) -> dict[str, Any]:
    """What `plan_by_returns` needs: as `plan_inputs`, with today's window for every persona, plus
    the published tracks' revenue (`returns`) and each persona's jobs in the floor period (`recent`)."""
    today = window_start(now, DAY)
    names = [p.name for p in policy.personas]
    planned = {n: await queue.count_prefix(key_prefix(n, batch_id(today))) for n in names}
    returns = track_returns(tracks, now, queue.limits, {p.name: p.providers[0] for p in policy.personas})
    recent = await queue.planned_since(now - policy.spending.floor.every)
    return {
        "planned": planned,
        "limits": queue.limits,
        "spend": await queue.spend(now),
        "queued_cost": await queue.queued_cost(),
        "returns": returns,
        "recent": recent,
    }
