"""Shared by the alert-rule tests: run `promtool test rules` on deploy/base/prometheusrule.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

RULES = Path(__file__).resolve().parents[2] / "deploy" / "base" / "prometheusrule.yaml"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def alert_rule(name: str) -> dict[str, Any]:
    """The rule of alert `name` as deploy/base/prometheusrule.yaml ships it."""
    doc = yaml.safe_load(RULES.read_text())
    return next(r for g in doc["spec"]["groups"] for r in g["rules"] if r.get("alert") == name)


def check_rules(tmp_path: Path, input_series: list[dict[str, str]], alert_rule_test: list[dict[str, Any]]) -> None:
    """Evaluate the shipped rules on `input_series` (1-minute steps); fail with promtool's output."""
    doc = yaml.safe_load(RULES.read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    for case in alert_rule_test:  # every alert links its runbook: expected with the annotations given
        for exp in case.get("exp_alerts", ()):
            if "exp_annotations" in exp:
                url = alert_rule(case["alertname"])["annotations"]["runbook_url"]
                exp["exp_annotations"] = {"runbook_url": url, **exp["exp_annotations"]}
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": input_series, "alert_rule_test": alert_rule_test}]}  # fmt: skip
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    res = subprocess.run(["promtool", "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
