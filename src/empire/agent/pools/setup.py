"""Plug the generation pools into the daemon (`empire run`).

Called by `empire.agent.daemon.build_daemon` through `AREA_MODULES`, after tiering (whose storage
backend, `daemon.services["storage_backend"]`, receives the generated tracks):

* the *dispatcher* runs on every replica as a background task: the durable queue's leases make
  that safe, and more replicas carry more jobs (with `EMPIRE_REDIS_URL` their rate limits and
  concurrency slots are shared through Redis; without it each process limits itself). It stops
  claiming while the agent is in dry run. Finished, compliant tracks are stored in the hottest
  tier and recorded in `content_objects`, where tiering takes over (`empire tiers status`);
* `Generate` actions get the `GenerateExecutor`; `PausePersona` and `DrainAccount` (alert
  remediations) get the `HoldExecutor`, whose holds live in the state DB;
* the *planner* is a periodic job, `generation-plan`, leader only, every `loop.interval`;
* every replica refreshes the holds and the budget gauges every few seconds;
* a policy listener swaps limits, routing, budgets and changed providers in;
* `POST /v1/providers/<name>/callback` for HTTP providers in callback mode, and the `/status`
  section "pools".
"""

from __future__ import annotations

import logging
from typing import Any

from empire.agent.pools.bucket import LocalLimiter
from empire.agent.pools.callbacks import callback_routes
from empire.agent.pools.dispatcher import DispatcherOptions
from empire.agent.pools.executor import GenerateExecutor
from empire.agent.pools.holds import HoldExecutor
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.planning import GenerationPlanner
from empire.agent.pools.publish import DirectoryContentSink, StorageContentSink
from empire.agent.pools.runtime import PoolsRuntime
from empire.agent.pools.trends import TrendReader
from empire.agent.ports import RateLimiter
from empire.agent.types import DrainAccount, Generate, PausePersona
from empire.policies.loading import LoadedPolicy
from empire.policies.schema import Policy
from empire.state.holds import SqlHoldStore

__all__ = ["setup"]

logger = logging.getLogger(__name__)


def _limiter(daemon: Any) -> tuple[RateLimiter, str]:
    url = daemon.settings.redis_url
    if url is None:
        return LocalLimiter(), "in process (no EMPIRE_REDIS_URL: each replica limits itself)"
    from empire.state.redis import RedisLimiter

    return RedisLimiter(url.get_secret_value()), "shared through Redis"


def _sink(daemon: Any, policy: Policy) -> Any:
    hot = policy.storage.tiers[0].name  # hottest first
    backend = daemon.services.get("storage_backend")
    if backend is not None:
        return StorageContentSink(daemon.db, backend, hot)
    root = daemon.settings.data_dir / "tiers"
    logger.warning("pools: no storage backend from tiering; generated tracks go to %s/%s", root, hot)
    return DirectoryContentSink(daemon.db, root, hot)


def setup(daemon: Any) -> None:
    def policy() -> Policy:
        return daemon.policy().policy

    pol = policy()
    s = daemon.settings
    limiter, limits_where = _limiter(daemon)
    sink = _sink(daemon, pol)
    metrics = daemon.monitor.group(PoolMetrics)
    runtime = PoolsRuntime(
        policy, daemon.db, daemon.clock, limiter, DispatcherOptions(owner=s.replica_id), sink, metrics=metrics,
        secrets=daemon.services.get("secret_reader"), paused=lambda: daemon.loop.dry_run, holds=SqlHoldStore(daemon.db),
    )  # fmt: skip
    daemon.services["pools"] = runtime

    daemon.runner.register(Generate, GenerateExecutor(runtime.queue, policy, daemon.clock))
    holds = HoldExecutor(runtime.holds_store, policy, daemon.clock, s.replica_id, runtime.apply_holds)
    daemon.runner.register(PausePersona, holds)
    daemon.runner.register(DrainAccount, holds)

    actions = daemon.monitor.loop.actions
    trends = TrendReader(daemon.observer, policy, metrics.on_trend)
    planner = GenerationPlanner(
        runtime.queue, runtime.holds_store, policy, lambda a, now: daemon.runner.run(a, at=now), daemon.store,
        metrics=metrics, count_skipped=lambda reason: actions.labels("generate", reason, "skipped").inc(),
        replica=s.replica_id, on_holds=runtime.apply_holds, trend=trends.factors,
    )  # fmt: skip
    daemon.services["generation_planner"] = planner
    daemon.jobs.add("persona-trends", pol.loop.interval, trends)  # reads each persona's trend every trend.every
    daemon.jobs.add("generation-plan", pol.loop.interval, planner)

    def on_policy(loaded: LoadedPolicy) -> None:
        new = loaded.policy
        runtime.apply_policy(new)
        if isinstance(sink, StorageContentSink):
            sink.tier = new.storage.tiers[0].name
        for name, fn in (("persona-trends", trends), ("generation-plan", planner)):
            job = daemon.jobs.jobs.get(name)
            if job is not None and job.interval != new.loop.interval:
                daemon.jobs.add(name, new.loop.interval, fn)

    daemon.policy_listeners.append(on_policy)
    daemon.routes.extend(
        callback_routes(policy, lambda: runtime.hubs, daemon.db, daemon.clock,
                        secrets=daemon.services.get("secret_reader"), max_body_bytes=s.http.max_body_bytes)
    )  # fmt: skip
    daemon.context.status_sections["pools"] = lambda: {
        **runtime.status(), "limits": limits_where, "content": f"{sink.backend!r} tier {sink.tier}",
        "planner": planner.last, "trends": trends.status(),
    }  # fmt: skip
    daemon.background.append(runtime.run)
    daemon.background.append(runtime.refresh_forever)

    async def close() -> None:
        await runtime.aclose()
        await limiter.aclose()

    daemon.closers.append(close)
    logger.info("pools: %d providers, %d personas, limits %s, tracks into %s",
                len(pol.providers), len(pol.personas), limits_where, sink.tier)  # fmt: skip
