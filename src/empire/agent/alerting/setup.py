"""Plug alerting into the daemon (`empire run`): executor, rule job, dispatcher + delivery tasks, `/alerts`.

Called by `empire.agent.daemon.build_daemon` through `AREA_MODULES`:

* `Alert` actions get the `AlertExecutor` (store the alert, wake the dispatcher);
* the `alert-rules` periodic job evaluates the rules every `loop.interval` (leader only);
* the dispatcher and delivery tasks run in the daemon's task group (`AlertService.run`);
* `GET /alerts`, a `/status` section ("alerting") and the `empire_alert*` metrics.

Remediation actions other than scaling (`pause_persona`, `drain_account`) are journaled like any
action and executed by the generation area's `HoldExecutor` (`pools/holds.py`): the hold is kept
in the state DB, so it outlives a restart, and every replica's dispatcher follows it.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from empire.agent.alerting.api import routes
from empire.agent.alerting.job import AlertRulesJob
from empire.agent.alerting.metrics import AlertMetrics
from empire.agent.alerting.receivers import build_receivers
from empire.agent.alerting.secrets import resolver
from empire.agent.alerting.service import AlertService
from empire.agent.alerting.store import AlertStore
from empire.agent.types import Alert
from empire.policies.schema import Policy

__all__ = ["setup"]

logger = logging.getLogger(__name__)


def setup(daemon: Any) -> None:
    def policy() -> Policy:
        return daemon.policy().policy

    client = httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False)
    secrets = resolver(daemon.services.get("secret_reader"))  # Kubernetes Secret references when in a cluster
    store = AlertStore(daemon.db)
    alerting = policy().alerting
    service = AlertService(store, alerting, build_receivers(alerting, client, secrets), daemon.clock, daemon.monitor,
                           leader=daemon.leader)  # fmt: skip
    daemon.runner.register(Alert, service.executor)
    # predicted_breach rules read the horizon forecasts the predictive area offers (it is set up after us)
    rules = AlertRulesJob(policy, daemon.loop, daemon.runner, store,
                          horizon=lambda: daemon.services.get("forecast_horizon"), metrics=daemon.monitor.group(AlertMetrics))  # fmt: skip
    version = {"v": daemon.policy().version}

    async def evaluate(now: Any) -> None:
        if daemon.policy().version != version["v"]:  # hot reload: new routes, receivers
            version["v"] = daemon.policy().version
            service.update_policy(policy().alerting, build_receivers(policy().alerting, client, secrets))
        await rules(now)

    daemon.jobs.add("alert-rules", policy().loop.interval, evaluate)
    daemon.routes.extend(routes(store, daemon.clock, service))
    daemon.context.status_sections["alerting"] = lambda: {
        "rules": rules.last_results,
        "muted": dict(service.last_plan.muted) if service.last_plan else {},
        "receivers": [f"{r.name} ({r.kind})" for r in policy().alerting.receivers],
    }  # fmt: skip
    daemon.background.append(service.run)

    async def close() -> None:
        await service.aclose()
        await client.aclose()

    daemon.closers.append(close)
    logger.info("alerting: %d rules, receivers %s", len(alerting.rules),
                ", ".join(f"{r.name} ({r.kind})" for r in alerting.receivers))  # fmt: skip
