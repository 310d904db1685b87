"""`EmpireBudgetNearLimit` evaluated by promtool on synthetic series of the budget gauges: it fires above
90 % of a budget (per provider, and globally as provider "all providers"), not below, not without a limit."""

from __future__ import annotations

from pathlib import Path

from promtool_rules import alert_rule, check_rules, needs_promtool

pytestmark = needs_promtool


def test_budget_alert_fires_above_ninety_percent(tmp_path: Path) -> None:
    rule = alert_rule("EmpireBudgetNearLimit")
    series = {  # two replicas export the same numbers (every replica refreshes them from the state DB)
        'empire_pool_budget_spend{provider="music",period="day",pod="%s"}': "80+1x30",  # 80 -> 110 of 100
        'empire_pool_budget_limit{provider="music",period="day",pod="%s"}': "100x30",
        'empire_pool_budget_spend{provider="voice",period="day",pod="%s"}': "5x30",  # no limit: never fires
        'empire_budget_spend{period="month",pod="%s"}': "950x30",
        'empire_budget_limit{period="month",pod="%s"}': "1000x30",
        'empire_budget_spend{period="day",pod="%s"}': "85x30",
        'empire_budget_limit{period="day",pod="%s"}': "200x30",
    }

    def alert(provider: str, period: str, percent: str) -> dict:
        summary = f"generation spend on {provider} is at {percent} of its {period} budget"
        return {"exp_labels": {"severity": "warning", "provider": provider, "period": period},
                "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]}}  # fmt: skip

    inputs = [{"series": name % pod, "values": values} for name, values in series.items() for pod in ("a", "b")]
    check_rules(tmp_path, inputs, [
        {"eval_time": "5m", "alertname": "EmpireBudgetNearLimit",
         "exp_alerts": [alert("all providers", "month", "95%")]},
        {"eval_time": "20m", "alertname": "EmpireBudgetNearLimit",
         "exp_alerts": [alert("all providers", "month", "95%"), alert("music", "day", "100%")]},
    ])  # fmt: skip
