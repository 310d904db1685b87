"""The Grafana dashboard and the PrometheusRule only query metrics the agent actually exports.

The exported names come from the code, not from a list: every metric group of `Monitor` is
instantiated on a fresh registry and its families are expanded the way the Prometheus text
format names samples (`_total`/`_created` for counters, `_bucket`/`_count`/`_sum` for histograms).
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from empire.agent.alerting.metrics import AlertMetrics
from empire.agent.backup.metrics import BackupMetrics
from empire.agent.horizon.metrics import HorizonMetrics
from empire.agent.kube.events import EventMetrics
from empire.agent.monitor import Monitor
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.predictive import PredictiveMetrics
from empire.agent.tiering.metrics import TieringMetrics
from empire.operator.metrics import OperatorMetrics

AREA_GROUPS = (AlertMetrics, BackupMetrics, EventMetrics, HorizonMetrics, OperatorMetrics, PoolMetrics,
               PredictiveMetrics, TieringMetrics)  # fmt: skip

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "base"
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan", "Inf", "NaN",
}  # fmt: skip


@functools.cache
def exported() -> frozenset[str]:
    monitor = Monitor(CollectorRegistry())
    groups = [name for name, attr in vars(Monitor).items() if isinstance(attr, functools.cached_property)]
    assert groups, "Monitor has no metric groups"
    for name in groups:
        getattr(monitor, name)
    for group in AREA_GROUPS:
        monitor.group(group)
    names = set()
    for family in monitor.registry.collect():
        for suffix in SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return frozenset(names)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels, durations left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors, subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", r"\1", e)  # grouping labels
    out = set()
    for m in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        rest = e[m.end() :].lstrip()
        if rest.startswith("(") or re.match(r"(by|without)\b", rest) or m.group() in PROMQL_WORDS:
            continue  # a function, an aggregation (`sum by (x) (...)`), or a keyword
        out.add(m.group())
    return out


def test_metric_name_extraction() -> None:
    expr = ('sum by (target, reason) (increase(empire_decisions_total{target=~"$target", x="a{b}"}[$__rate_interval]))'
            " / on(target) group_left max(empire_desired_replicas offset 5m) > bool 0.5 and time() - foo_bar")  # fmt: skip
    assert metric_names(expr) == {"empire_decisions_total", "empire_desired_replicas", "foo_bar"}
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(x_bucket[5m])))") == {"x_bucket"}


def test_every_metric_group_is_collected() -> None:
    names = exported()
    for expected in ("empire_desired_replicas", "empire_decisions_total", "empire_loop_tick_duration_seconds_bucket",
                     "empire_pool_spend_total", "empire_tier_bytes", "empire_alerts_firing"):  # fmt: skip
        assert expected in names


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "empire.json").read_text())


def panels() -> list[dict[str, Any]]:
    out = []
    for p in dashboard()["panels"]:
        out.append(p)
        out.extend(p.get("panels") or [])
    return out


def test_every_dashboard_query_names_exported_metrics() -> None:
    problems = []
    queries = 0
    for p in panels():
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            names = metric_names(t["expr"])
            queries += 1
            if not names:
                problems.append(f"{p['title']}: {t['expr']!r} names no metric")
            problems += [f"{p['title']}: {n} is not exported" for n in sorted(names - exported())]
    assert queries > 20
    assert problems == []


def test_dashboard_variables_query_exported_metrics() -> None:
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?,\s*(\w+)\)", var["definition"])
        assert m, var["definition"]
        assert m.group(1) in exported()


def test_dashboard_covers_each_area() -> None:
    used = {n for p in panels() for t in p.get("targets") or [] for n in metric_names(t["expr"])}
    wanted = {
        "desired vs current replicas": {"empire_desired_replicas", "empire_current_replicas"},
        "decision reasons": {"empire_decisions_total"},
        "forecast vs actual": {
            "empire_forecast_replicas",
            "empire_forecast_demand",
            "empire_forecast_horizon_demand",
            "empire_current_replicas",
        },
        "alerts": {"empire_alerts_firing"},
        "pool throughput": {"empire_pool_succeeded_total"},
        "pool cooldowns": {"empire_pool_account_cooling", "empire_pool_cooldowns_total"},
        "rejected keys": {"empire_pool_account_key_rejected"},
        "pool spend": {"empire_pool_spend_total"},
        "tier sizes": {"empire_tier_bytes"},
        "tier moves": {"empire_tier_moves_total", "empire_tier_moved_bytes_total"},
    }
    assert {area: names - used for area, names in wanted.items() if names - used} == {}


def test_dashboard_is_well_formed() -> None:
    d = dashboard()
    ids = [p["id"] for p in panels()]
    assert len(ids) == len(set(ids))
    assert d["uid"] == "empire-agent" and d["title"] == "empire"
    for p in panels():
        if p["type"] != "row":
            assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheusrule.yaml").read_text())
    return [r for g in doc["spec"]["groups"] for r in g["rules"]]


def test_every_alert_names_exported_metrics() -> None:
    problems = []
    for r in rules():
        names = metric_names(r["expr"])
        if not names:
            problems.append(f"{r['alert']}: names no metric")
        problems += [f"{r['alert']}: {n} is not exported" for n in sorted(names - exported())]
    assert problems == []


def test_the_agents_own_alerts_are_there() -> None:
    alerts = {r["alert"]: r for r in rules()}
    for name in ("EmpireLoopStalled", "EmpireMetricsStale", "EmpireActionFailures", "EmpireBudgetNearLimit",
                 "EmpireProviderKeyRejected"):  # fmt: skip
        assert name in alerts
    for r in alerts.values():
        assert r["labels"]["severity"] in ("critical", "warning", "info")
        assert r["annotations"]["summary"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    doc = yaml.safe_load((DEPLOY / "prometheusrule.yaml").read_text())
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
    res = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_no_metric_has_a_label_prometheus_sets_on_scrape() -> None:
    """`job` and `instance` are the scrape target's: an exported one is renamed `exported_job` (and with
    honorLabels, would replace the target's). Per-target series carry the workload's namespace."""
    monitor = Monitor(CollectorRegistry())
    groups = [name for name, attr in vars(Monitor).items() if isinstance(attr, functools.cached_property)]
    for name in groups:
        getattr(monitor, name)
    labels = {}
    for collector in list(monitor.registry._collector_to_names):  # the registry's collectors, labelled or not
        labels[collector._name] = set(getattr(collector, "_labelnames", ()))
    reserved = {"job", "instance", "quantile"}  # quantile: a summary's, not a gauge's
    assert not [(n, ls & reserved) for n, ls in labels.items() if ls & reserved]
    for name in ("empire_desired_replicas", "empire_current_replicas", "empire_min_replicas", "empire_max_replicas"):
        assert labels[name] == {"target", "namespace", "workload", "workload_kind"}, name
    assert labels["empire_signal_value"] == labels["empire_signal_target"] == labels["empire_desired_replicas"] | {
        "signal"}  # fmt: skip
    assert labels["empire_metric_source_up"] == {"source"}
    sm = yaml.safe_load((DEPLOY / "servicemonitor.yaml").read_text())
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True


def test_dashboard_selects_one_install_and_shows_units() -> None:
    """Namespace and instance variables; every query pinned to the chosen instances (per-target series
    carry the workload's namespace, so the instance pins them); money and time panels have units."""
    names = [v["name"] for v in dashboard()["templating"]["list"]]
    assert names[:3] == ["datasource", "namespace", "instance"]
    for p in panels():
        for t in p.get("targets") or []:
            for m in re.finditer(r"\b(empire_\w+)(\{[^}]*\})?(?![\w(])", t["expr"]):
                assert m.group(2) and 'instance=~"$instance"' in m.group(2), (p["title"], t["expr"])
    units = {p["title"]: p.get("fieldConfig", {}).get("defaults", {}).get("unit") for p in panels()}
    for title in ("Spend per day", "Monthly cost per tier", "Planned saving and unfinished moves"):
        assert units[title] == "currencyUSD", title
    for title in ("Since last tick", "Tick duration", "Signal staleness", "Job latency p95"):
        assert units[title] == "s", title
    storage = [p for p in panels() if any("empire_tier_" in t["expr"] for t in p.get("targets") or [])]
    assert storage and all(p["fieldConfig"]["defaults"]["noValue"] == "0" for p in storage)
