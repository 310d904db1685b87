"""`EmpireProviderKeyRejected` evaluated by promtool on synthetic series of the key-rejected gauge: it
fires per provider/account once one replica has marked the key rejected for 5 minutes, with a summary
and description naming both, and not for a shorter mark or for an ordinary cooldown."""

from __future__ import annotations

from pathlib import Path

from promtool_rules import alert_rule, check_rules, needs_promtool

pytestmark = needs_promtool


def test_key_rejected_alert_fires_per_account_after_five_minutes(tmp_path: Path) -> None:
    rule = alert_rule("EmpireProviderKeyRejected")
    series = {  # the breaker lives in each replica's memory: only the replica that got the 401 marks it
        'empire_pool_account_key_rejected{provider="music",account="a",pod="a"}': "0 0 1x12 0x10",  # minutes 2-14
        'empire_pool_account_key_rejected{provider="music",account="a",pod="b"}': "0x24",
        'empire_pool_account_key_rejected{provider="music",account="b",pod="a"}': "0 1x3 0x20",  # cleared in 3m
        'empire_pool_account_key_rejected{provider="voice",account="v",pod="a"}': "0x24",
        'empire_pool_account_cooling{provider="voice",account="v",pod="a"}': "1x24",  # a 429 cooldown: not this
    }

    def alert(provider: str, account: str) -> dict:
        def fill(text: str) -> str:
            return text.replace("{{ $labels.provider }}", provider).replace("{{ $labels.account }}", account)

        return {"exp_labels": {"severity": "warning", "provider": provider, "account": account},
                "exp_annotations": {k: fill(v) for k, v in rule["annotations"].items()}}  # fmt: skip

    desc = alert("music", "a")["exp_annotations"]["description"]
    assert "music rejects the key of account a" in desc and "Rotate the key in the secret" in desc
    check_rules(tmp_path, [{"series": name, "values": values} for name, values in series.items()], [
        {"eval_time": "6m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": []},  # pending 4m
        {"eval_time": "7m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": [alert("music", "a")]},
        {"eval_time": "14m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": [alert("music", "a")]},
        {"eval_time": "16m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": []},  # a probe passed
    ])  # fmt: skip
