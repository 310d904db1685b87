"""Alerting: rules -> alerts -> routing tree -> grouped notifications -> outbox -> receivers.

    rules.evaluate()  PURE   observations, anomaly scores, forecasts -> Alert + remediation actions
         │ (ActionRunner journals them; AlertExecutor stores alerts in the state DB)
    dispatch.plan()   PURE   routing tree, group_wait/interval/repeat, dedup, inhibition, silences
         │ (AlertService writes due notifications into the `notifications` outbox)
    outbox            async  one delivery task, retries with backoff, never blocks the loop
         └─► receivers: Slack webhook, email (SMTP), Alertmanager, the built-in dashboard

Heavy pieces (SQL store, receivers, HTTP routes) are imported from their modules, not from here.
"""
