"""Every alert of deploy/base/prometheusrule.yaml evaluated by `promtool test rules` on synthetic series.

Each case runs two installs side by side (namespaces `ok` and `bad`, both job `empire`): the alert
fires for the broken one only, with its `namespace` and `job`, so one healthy install cannot hide a
broken one. `EmpireProviderKeyRejected`, `EmpireBudgetNearLimit` and `EmpireStateDatabaseDown` have their
own files.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from promtool_rules import RULES, alert_rule, check_rules, needs_promtool

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
OWN_FILES = {"EmpireProviderKeyRejected", "EmpireBudgetNearLimit", "EmpireStateDatabaseDown"}
BAD = {"namespace": "bad", "job": "empire"}


def series(metric: str, ok: str, bad: str, **labels: str) -> list[dict[str, str]]:
    """The same metric for the healthy and the broken install (`ok`/`bad` are promtool value strings)."""
    out = []
    for ns, values in (("ok", ok), ("bad", bad)):
        all_labels = {**labels, "namespace": ns, "job": "empire", "pod": f"empire-{ns}"}
        body = ",".join(f'{k}="{v}"' for k, v in all_labels.items())
        out.append({"series": f"{metric}{{{body}}}", "values": values})
    return out


# alert -> (input series, eval time, extra labels of the firing alert, annotations templated per case)
CASES: dict[str, tuple[list[dict[str, str]], str, dict[str, str], dict[str, str]]] = {
    "EmpireLoopStalled": (series("empire_loop_last_tick_timestamp_seconds", "0+60x20", "0x20"), "10m", {},
                          {"summary": "the empire control loop has not finished a tick for 10m 0s"}),
    "EmpireNoLeader": (series("empire_leader", "1x20", "0x20"), "6m", {}, {}),
    "EmpireLoopErrors": (series("empire_loop_errors_total", "0x40", "0+1x40", stage="observe",
                                error_class="temporary"), "25m", {"stage": "observe", "error_class": "temporary"},
                         {"summary": "empire loop errors in stage observe (temporary): 10 in 10m"}),
    "EmpirePolicyRejected": (series("empire_policy_reloads_total", "0x10", "0 0 0 0 0 1 1 1 1 1 1",
                                    result="rejected"), "7m", {}, {}),
    "EmpireMetricSourceDown": (series("empire_metric_source_up", "1x10", "0x10", source="prometheus"), "6m",
                               {"source": "prometheus"}, {}),
    "EmpireMetricsStale": (series("empire_observation_staleness_seconds", "10x10", "400x10", target="api",
                                  signal="cpu"), "6m", {"target": "api", "signal": "cpu"},
                           {"summary": "signal cpu of target api is 6m 40s old"}),
    "EmpireActionFailures": (series("empire_actions_total", "0x40", "0+1x40", kind="scale", reason="above_target",
                                    result="failed"), "30m", {"kind": "scale", "reason": "above_target"},
                             {"summary": "empire scale actions keep failing (above_target)"}),
    "EmpireDeadJobs": (series("empire_jobs_dead_total", "0x20", "0+1x20", provider="music"), "10m",
                       {"provider": "music"},
                       {"summary": "generation jobs on music were dead-lettered in the last hour"}),
    "EmpireAccountCoolingDown": (series("empire_pool_account_cooling", "0x40", "1x40", provider="music",
                                        account="a1"), "35m", {"provider": "music", "account": "a1"},
                                 {"summary": "API account music/a1 has been cooling down for 30m"}),
    "EmpireGenerationHeldBack": (series("empire_generation_held", "0x40", "3x40", persona="nova",
                                        reason="budget_deferred"), "35m",
                                 {"persona": "nova", "reason": "budget_deferred"},
                                 {"summary": "3 tracks of persona nova held back (budget_deferred)"}),
    "EmpireAlertDeliveryFailing": (series("empire_alert_notifications_total", "0x40", "0+1x40", receiver="slack",
                                          result="failed"), "30m", {"receiver": "slack"},
                                   {"summary": "empire cannot deliver notifications to receiver slack"}),
    "EmpireTierMovesFailing": (series("empire_tier_moves_total", "0x20", "0+1x20", result="failed",
                                      reason="checksum_mismatch"), "10m", {"reason": "checksum_mismatch"},
                               {"summary": "storage tier moves failed (checksum_mismatch)"}),
    "EmpireBackupFailing": (series("empire_backup_runs_total", "0x20", "0+1x20", **{"class": "hourly"},
                                   result="failed"), "10m", {"class": "hourly"},
                            {"summary": "hourly backups of the state database are failing"}),
    "EmpireBackupOverdue": (series("empire_backup_overdue", "0x20", "1x20", **{"class": "daily"}), "10m",
                            {"class": "daily"},
                            {"summary": "no daily backup of the state database for the current slot"}),
    "EmpireTargetConflict": (series("empire_target_conflict", "0x20", "1x20", target="api", workload="api",
                                    workload_kind="Deployment"), "15m", {"target": "api", "workload": "api"},
                             {"summary": "target api is not scaled: another autoscaler targets bad/api"}),
    "EmpireOperatorStalled": (series("empire_operator_last_successful_reconcile_timestamp_seconds",
                                     "0+60x40", "60x40"), "30m", {},
                              {"summary": "the empire operator has not reconciled successfully for 29m 0s"}),
    "EmpireConfigInvalid": (series("empire_operator_invalid_specs", "0x30", "1x30"), "20m", {},
                            {"summary": "1 EmpireConfig(s) have an invalid spec; the last good policy stays in force"}),
    "EmpireTierMovesStuck": (series("empire_tier_unfinished_moves", "0x140", "2x140"), "130m", {},
                             {"summary": "2 storage tier moves have been unfinished for 2h"}),
}  # fmt: skip


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_every_alert_has_a_promtool_test_and_a_runbook_section() -> None:
    names = {r["alert"] for r in alerts()}
    assert names == set(CASES) | OWN_FILES | {"EmpireAgentAbsent"}
    headings = {m.lower() for m in re.findall(r"^## (\w+)$", RUNBOOK.read_text(), re.M)}
    for r in alerts():
        url = r["annotations"]["runbook_url"]
        assert url == f"docs/runbook.md#{r['alert'].lower()}" and r["alert"].lower() in headings, r["alert"]


def test_every_alert_but_absent_keeps_namespace_and_job() -> None:
    for r in alerts():
        if r["alert"] == "EmpireAgentAbsent":
            continue
        groupings = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", r["expr"])
        assert groupings, r["alert"]
        for g in groupings:
            assert {"namespace", "job"} <= {x.strip() for x in g.split(",")}, (r["alert"], g)


def expected(name: str, labels: dict[str, str], templated: dict[str, str]) -> dict[str, Any]:
    rule = alert_rule(name)
    static = {k: v for k, v in rule["annotations"].items() if k != "runbook_url"}
    return {"exp_labels": {**rule["labels"], **BAD, **labels}, "exp_annotations": {**static, **templated}}


@needs_promtool
@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_for_the_broken_install_only(tmp_path: Path, name: str) -> None:
    inputs, at, labels, templated = CASES[name]
    check_rules(tmp_path, inputs, [{"eval_time": at, "alertname": name,
                                    "exp_alerts": [expected(name, labels, templated)]}])  # fmt: skip


@needs_promtool
def test_agent_absent_fires_when_nothing_is_scraped_and_not_otherwise(tmp_path: Path) -> None:
    rule = alert_rule("EmpireAgentAbsent")
    static = {k: v for k, v in rule["annotations"].items() if k != "runbook_url"}
    check_rules(tmp_path, [{"series": 'up{job="other"}', "values": "1x20"}], [
        {"eval_time": "11m", "alertname": "EmpireAgentAbsent",
         "exp_alerts": [{"exp_labels": rule["labels"], "exp_annotations": static}]}])  # fmt: skip
    check_rules(tmp_path, series("empire_loop_ticks_total", "0+1x20", "0x20"), [
        {"eval_time": "11m", "alertname": "EmpireAgentAbsent", "exp_alerts": []}])  # fmt: skip
