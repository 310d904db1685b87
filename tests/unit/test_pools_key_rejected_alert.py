"""`EmpireProviderKeyRejected` evaluated by promtool on synthetic series of the key-rejected gauge: it
fires per provider/account once one replica has marked the key rejected for 5 minutes, with a summary
and description naming both, and not for a shorter mark or for an ordinary cooldown."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheusrule.yaml"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def test_key_rejected_alert_fires_per_account_after_five_minutes(tmp_path: Path) -> None:
    doc = yaml.safe_load(RULES.read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    rule = next(r for g in doc["spec"]["groups"] for r in g["rules"] if r["alert"] == "EmpireProviderKeyRejected")
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
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": name, "values": values} for name, values in series.items()],
            "alert_rule_test": [
                {"eval_time": "6m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": []},  # pending 4m
                {"eval_time": "7m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": [alert("music", "a")]},
                {"eval_time": "14m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": [alert("music", "a")]},
                {"eval_time": "16m", "alertname": "EmpireProviderKeyRejected", "exp_alerts": []},  # a probe passed
            ],
        }],
    }  # fmt: skip
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    res = subprocess.run(["promtool", "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
