"""Alerting: rules -> alerts -> routing tree -> grouped notifications -> outbox -> receivers.

    rules.evaluate()  PURE   observations, anomaly scores, forecasts -> Alert + remediation actions
         │ (ActionRunner journals them; AlertExecutor stores alerts in the state DB)
    dispatch.plan()   PURE   routing tree, group_wait/interval/repeat, dedup, inhibition, silences
         │ (AlertService writes due notifications into the `notifications` outbox)
    outbox            async  one delivery task, retries with backoff, never blocks the loop
         └─► receivers: Slack webhook, email (SMTP), Alertmanager, the built-in dashboard

Heavy pieces (SQL store, receivers, HTTP routes) are imported from their modules, not from here.
"""

from empire.agent.alerting.dispatch import DispatchState, Plan, plan
from empire.agent.alerting.matching import Matcher, fingerprint, parse_matchers
from empire.agent.alerting.muting import Silence
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.alerting.routing import RouteNode, build_tree, match_routes
from empire.agent.alerting.rules import Evaluated, RuleInputs, RuleState, RuleStatus, evaluate, restore_state

__all__ = [
    "AlertInstance",
    "DispatchState",
    "Evaluated",
    "Matcher",
    "Notification",
    "Plan",
    "RouteNode",
    "RuleInputs",
    "RuleState",
    "RuleStatus",
    "Silence",
    "build_tree",
    "evaluate",
    "fingerprint",
    "match_routes",
    "parse_matchers",
    "plan",
    "restore_state",
]
