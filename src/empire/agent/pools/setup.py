"""Plug the generation pools into the daemon (`empire run`).

`AREA` is built by `empire.agent.daemon.build_daemon` (see `empire.agent.areas`), after tiering (whose
storage backend, offered as `"storage_backend"`, receives the generated tracks):

* the *dispatcher* runs on every replica as a background task: the durable queue's leases make
  that safe, and more replicas carry more jobs (with `EMPIRE_REDIS_URL` their rate limits and
  concurrency slots are shared through Redis; without it each process limits itself). It stops
  claiming while the agent is in dry run. Finished, compliant tracks are stored in the hottest
  tier and recorded in `content_objects`, where tiering takes over (`empire tiers status`);
* `Generate` actions get the `GenerateExecutor`; `PausePersona` and `DrainAccount` (alert
  remediations) get the `HoldExecutor`, whose holds live in the state DB;
* the *planner* is a periodic job, `generation-plan`, leader only, every `loop.interval`;
* every replica refreshes the holds and the budget gauges every few seconds;
* `on_policy` swaps limits, routing, budgets and changed providers in (the daemon reschedules the jobs);
* `POST /v1/providers/<name>/callback` for HTTP providers in callback mode, and the `/status`
  section "pools".
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from empire.agent.api.spec import api_routes
from empire.agent.areas import AreaDeps, AreaHandle, AreaPlugin, PeriodicJob
from empire.agent.pools.analytics import AnalyticsPull, pull_every
from empire.agent.pools.api import endpoints
from empire.agent.pools.books import BusinessMetricsJob
from empire.agent.pools.bucket import LocalLimiter
from empire.agent.pools.callbacks import callback_routes
from empire.agent.pools.dispatcher import DispatcherOptions
from empire.agent.pools.executor import GenerateExecutor, HoldExecutor
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.performance_api import endpoints as performance_endpoints
from empire.agent.pools.plan_job import GenerationPlanner
from empire.agent.pools.publish import DirectoryContentSink, StorageContentSink
from empire.agent.pools.runtime import PoolsRuntime
from empire.agent.pools.trends import TrendReader
from empire.agent.ports import RateLimiter
from empire.agent.types import DrainAccount, Generate, PausePersona
from empire.policies.loading import LoadedPolicy
from empire.policies.schema import Policy
from empire.state.business import platform_books, trend_capture
from empire.state.callbacks import SqlCallbackStore
from empire.state.content import SqlContentCatalog
from empire.state.holds import SqlHoldStore
from empire.state.jobs import SqlJobQueue
from empire.state.performance import SqlPerformanceStore

__all__ = ["AREA", "build"]

logger = logging.getLogger(__name__)
BOOKS_EVERY = timedelta(minutes=15)  # the business books change with revenue figures: daily, at most hourly


def _limiter(deps: AreaDeps) -> tuple[RateLimiter, str]:
    url = deps.settings.redis_url
    if url is None:
        return LocalLimiter(), "in process (no EMPIRE_REDIS_URL: each replica limits itself)"
    from empire.state.redis import RedisLimiter

    return RedisLimiter(url.get_secret_value()), "shared through Redis"


def _sink(deps: AreaDeps, policy: Policy) -> Any:
    hot = policy.storage.tiers[0].name  # hottest first
    backend = deps.offered.get("storage_backend")
    if backend is not None:
        return StorageContentSink(SqlContentCatalog(deps.db), backend, hot)
    root = deps.settings.data_dir / "tiers"
    logger.warning("pools: no storage backend from tiering; generated tracks go to %s/%s", root, hot)
    return DirectoryContentSink(SqlContentCatalog(deps.db), root, hot)


def build(deps: AreaDeps) -> AreaHandle:
    def policy() -> Policy:
        return deps.policy().policy

    pol = policy()
    s = deps.settings
    limiter, limits_where = _limiter(deps)
    sink = _sink(deps, pol)
    metrics = deps.monitor.group(PoolMetrics)
    callbacks = SqlCallbackStore(deps.db)
    runtime = PoolsRuntime(
        policy, SqlContentCatalog(deps.db), deps.clock, limiter, DispatcherOptions(owner=s.replica_id), sink, metrics=metrics,
        # no claim in a dry run, nor while the state DB is down (a job's lease is its journal)
        secrets=deps.secret_reader, paused=lambda: deps.loop.dry_run or not deps.state_up(), holds=SqlHoldStore(deps.db),
        callbacks=callbacks, queue=SqlJobQueue(deps.db),
    )  # fmt: skip
    holds = HoldExecutor(runtime.holds_store, policy, deps.clock, s.replica_id, runtime.apply_holds)
    actions = deps.monitor.loop.actions
    trends = TrendReader(deps.observer, policy, metrics.on_trend)
    performance = SqlPerformanceStore(deps.db)
    pull = AnalyticsPull(policy, runtime.queue, performance, lambda: runtime.dispatcher.adapters)
    books = BusinessMetricsJob(policy, lambda since: platform_books(deps.db, since),
                               lambda since: trend_capture(deps.db, since), metrics)  # fmt: skip
    planner = GenerationPlanner(
        runtime.queue, runtime.holds_store, policy, lambda a, now: deps.runner.run(a, at=now), deps.store,
        metrics=metrics, count_skipped=lambda reason: actions.labels("generate", reason, "skipped").inc(),
        replica=s.replica_id, on_holds=runtime.apply_holds, trend=trends.factors,
        catalog=runtime.catalog,
    )  # fmt: skip

    def on_policy(loaded: LoadedPolicy) -> None:
        runtime.apply_policy(loaded.policy)
        if isinstance(sink, StorageContentSink):
            sink.tier = loaded.policy.storage.tiers[0].name

    async def close() -> None:
        await runtime.aclose()
        await limiter.aclose()

    def every(p: Policy) -> timedelta:
        return p.loop.interval

    return AreaHandle(
        jobs=[
            PeriodicJob("persona-trends", every, trends),  # reads each persona's trend every trend.every
            PeriodicJob("generation-plan", every, planner),
            PeriodicJob("business-metrics", lambda p: BOOKS_EVERY, books),
            PeriodicJob("analytics-pull", pull_every, pull),
        ],
        routes=[*callback_routes(policy, lambda: runtime.hubs, callbacks, deps.clock, secrets=deps.secret_reader,
                                 max_body_bytes=s.http.max_body_bytes),
                *api_routes(endpoints(runtime.queue, policy, deps.clock), s.http.max_body_bytes),
                *api_routes(performance_endpoints(performance, deps.clock), s.http.max_body_bytes)],
        status={"pools": lambda: {
            **runtime.status(), "limits": limits_where, "content": f"{sink.backend!r} tier {sink.tier}",
            "planner": planner.last, "trends": trends.status(), "analytics": pull.last,
        }},
        executors={Generate: GenerateExecutor(runtime.queue, policy, deps.clock), PausePersona: holds,
                   DrainAccount: holds},
        background=[runtime.run, runtime.refresh_forever],
        metrics=(PoolMetrics,),
        offers={"pools": runtime, "generation_planner": planner},
        on_policy=on_policy,
        close=close,
    )  # fmt: skip


AREA = AreaPlugin("pools", build)
