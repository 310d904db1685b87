"""`EmpireStateDatabaseDown` evaluated by promtool on synthetic series of `empire_state_db_failure` for
two installs (namespaces `ok` and `bad`): it fires for the broken one, with its reason, once its state
database has been down for 2 minutes, clears when it recovers, and a one-minute blip (a lock held past
the busy timeout) pages no one."""

from __future__ import annotations

from pathlib import Path

from promtool_rules import alert_rule, check_rules, needs_promtool

pytestmark = needs_promtool


def test_state_db_down_fires_with_its_reason_after_two_minutes(tmp_path: Path) -> None:
    rule = alert_rule("EmpireStateDatabaseDown")
    values = {  # every reason is exported, 0 but for the one in force
        ("bad", "disk_full"): "0 0 1x5 0x10",  # down in minutes 2-6
        ("bad", "busy"): "0x9 1 0x6",  # a one-minute blip at minute 9
        ("ok", "disk_full"): "0x16",
        ("ok", "busy"): "0x16",
    }
    series = [{"series": f'empire_state_db_failure{{namespace="{ns}",job="empire",pod="empire-{ns}",reason="{r}"}}',
               "values": v} for (ns, r), v in values.items()]  # fmt: skip

    def alert(reason: str) -> dict:
        def fill(text: str) -> str:
            return text.replace("{{ $labels.reason }}", reason)

        return {"exp_labels": {"severity": "critical", "namespace": "bad", "job": "empire", "reason": reason},
                "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items() if k != "runbook_url"}}  # fmt: skip

    assert "no action is being taken" in alert("disk_full")["exp_annotations"]["summary"]
    check_rules(tmp_path, series, [
        {"eval_time": "3m", "alertname": "EmpireStateDatabaseDown", "exp_alerts": []},  # pending
        {"eval_time": "4m", "alertname": "EmpireStateDatabaseDown", "exp_alerts": [alert("disk_full")]},
        {"eval_time": "6m", "alertname": "EmpireStateDatabaseDown", "exp_alerts": [alert("disk_full")]},
        {"eval_time": "8m", "alertname": "EmpireStateDatabaseDown", "exp_alerts": []},  # recovered
        {"eval_time": "11m", "alertname": "EmpireStateDatabaseDown", "exp_alerts": []},  # the blip
    ])  # fmt: skip
