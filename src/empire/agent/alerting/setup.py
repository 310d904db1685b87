"""Plug alerting into the daemon (`empire run`): executor, rule job, dispatcher + delivery tasks, `/alerts`.

`AREA` is built by `empire.agent.daemon.build_daemon` (see `empire.agent.areas`):

* `Alert` actions get the `AlertExecutor` (store the alert, wake the dispatcher);
* the `alert-rules` periodic job evaluates the rules every `loop.interval` (leader only); a reload
  swaps the routing tree and receivers in (`on_policy`);
* the dispatcher and delivery tasks run in the daemon's task group (`AlertService.run`);
* `GET /alerts`, a `/status` section ("alerting") and the `empire_alert*` metrics.

Remediation actions other than scaling (`pause_persona`, `drain_account`) are journaled like any
action and executed by the generation area's `HoldExecutor` (`pools/executor.py`): the hold is kept
in the state DB, so it outlives a restart, and every replica's dispatcher follows it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import httpx

from empire.agent.alerting.api import endpoints, routes
from empire.agent.alerting.job import AlertRulesJob, History
from empire.agent.alerting.metrics import AlertMetrics
from empire.agent.alerting.receivers import build_receivers
from empire.agent.alerting.secrets import resolver
from empire.agent.alerting.service import AlertService
from empire.agent.api.spec import api_routes
from empire.agent.areas import AreaDeps, AreaHandle, AreaPlugin, PeriodicJob
from empire.agent.types import Alert
from empire.policies.loading import LoadedPolicy
from empire.policies.schema import Policy
from empire.state.alerts import SqlAlertStore

__all__ = ["AREA", "build"]

logger = logging.getLogger(__name__)


def _history(deps: AreaDeps, policy: Callable[[], Policy]) -> History:
    """A signal's past from the metric source: its PromQL, or `target/signal` for a source that
    keys history by signal (a replayed trace, the simulation; as `horizon.service.history_query`)."""
    observer = deps.observer

    async def history(target: str, signal: str, start: datetime, end: datetime, step: float) -> list:
        query = f"{target}/{signal}"
        if not getattr(observer, "history_by_signal", False):
            query = next(s.query for s in policy().target(target).signals if s.name == signal)
        return list(await observer.history(query, start, end, step))

    return history


def build(deps: AreaDeps) -> AreaHandle:
    def policy() -> Policy:
        return deps.policy().policy

    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
    secrets = resolver(deps.secret_reader)  # Kubernetes Secret references when in a cluster
    store = SqlAlertStore(deps.db)
    alerting = policy().alerting
    service = AlertService(store, alerting, build_receivers(alerting, client, secrets), deps.clock, deps.monitor,
                           leader=deps.leader, state_up=deps.state_up)  # fmt: skip
    # predicted_breach rules read the horizon forecasts the predictive area offers (it is built after us)
    rules = AlertRulesJob(policy, deps.loop, deps.runner, store, horizon=lambda: deps.offered.get("forecast_horizon"),
                          metrics=deps.monitor.group(AlertMetrics), history=_history(deps, policy))  # fmt: skip

    def on_policy(loaded: LoadedPolicy) -> None:  # new routes, receivers
        new = loaded.policy.alerting
        service.update_policy(new, build_receivers(new, client, secrets))

    async def close() -> None:
        await service.aclose()
        await client.aclose()

    logger.info("alerting: %d rules, receivers %s", len(alerting.rules),
                ", ".join(f"{r.name} ({r.kind})" for r in alerting.receivers))  # fmt: skip
    return AreaHandle(
        jobs=[PeriodicJob("alert-rules", lambda p: p.loop.interval, rules)],
        routes=[*routes(store, deps.clock, service),
                *api_routes(endpoints(store, deps.clock, service), deps.settings.http.max_body_bytes)],
        status={"alerting": lambda: {
            "rules": rules.last_results,
            "muted": dict(service.last_plan.muted) if service.last_plan else {},
            "receivers": [f"{r.name} ({r.kind})" for r in policy().alerting.receivers],
        }},
        executors={Alert: service.executor},
        background=[service.run],
        metrics=(AlertMetrics,),
        on_policy=on_policy,
        close=close,
    )  # fmt: skip


AREA = AreaPlugin("alerting", build)
