"""The backtest suite's accounting (`empire.agent.backtest.suite`) on tiny hand-computed traces: the
capacity rule, a trace that holds or not, the totals and the half target, and a whole run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from empire.agent.backtest.engine import BacktestSettings
from empire.agent.backtest.suite import (
    DEFAULT_SUITE,
    SuiteTrace,
    TraceResult,
    capacity_for,
    format_suite,
    run_suite,
    suite_check,
    suite_trace,
    trace_check,
)
from empire.agent.backtest.trace import DemandTrace
from empire.errors import ConfigError

START = datetime(2026, 1, 5, tzinfo=UTC)


def summary(under: int, hours: float, minutes: int = 100) -> dict:
    return {"under_provisioned_minutes": under, "replica_hours": hours, "counted_minutes": minutes}


def result(name: str, reactive: tuple[int, float], empire: tuple[int, float]) -> TraceResult:
    return TraceResult(name, 100, 100, 1.0, {"reactive": summary(*reactive), "empire": summary(*empire)})


def test_capacity_rule_puts_the_p99_minute_at_40_replicas():
    values = np.arange(1.0, 101.0)  # p99 of 1..100 (linear interpolation) is 99.01
    ok = np.ones(100, dtype=bool)
    ok[-1] = False  # not counted: the p99 of 1..99 is 98.02
    trace = DemandTrace("t", START, values, ok)
    assert capacity_for(trace) == pytest.approx(98.02 / 40)
    with pytest.raises(ConfigError, match="no demand"):
        capacity_for(DemandTrace("z", START, np.zeros(10), np.ones(10, dtype=bool)))


def test_a_trace_holds_only_when_no_worse_on_both_counts():
    assert trace_check({"reactive": summary(10, 100.0), "empire": summary(10, 100.0)})["holds"]
    assert not trace_check({"reactive": summary(10, 100.0), "empire": summary(11, 90.0)})["holds"]
    assert not trace_check({"reactive": summary(10, 100.0), "empire": summary(2, 100.1)})["holds"]
    assert trace_check({"reactive": summary(10, 100.0)}) is None


def test_the_suite_totals_and_the_half_target():
    results = [result("a", (100, 500.0), (40, 490.0)), result("b", (20, 100.0), (20, 100.0))]
    check = suite_check(results)
    assert check["totals"]["reactive"] == {"under_provisioned_minutes": 120, "replica_hours": 600.0,
                                           "counted_minutes": 200}  # fmt: skip
    assert check["totals"]["empire"]["under_provisioned_minutes"] == 60
    assert check["under_ratio"] == 0.5 and check["met"]  # exactly half is at most half
    worse = [result("a", (100, 500.0), (30, 490.0)), results[1], result("c", (10, 10.0), (11, 9.0))]
    check = suite_check(worse)  # 61 of 130 is under half, but c is worse than reactive
    assert not check["met"] and check["traces_not_holding"] == ["c"] and check["under_provisioned_at_most_half"]
    assert "not: c" in format_suite(worse, BacktestSettings())


def test_suite_names_and_default_traces():
    names = [t.name for t in DEFAULT_SUITE]
    assert names[0] == "nasa" and "taxi-poisson-2" in names and "twitter-cvs" in names and "flash-crowd" in names
    assert suite_trace("twitter-fb").source == "twitter_volume_fb.csv.gz"
    with pytest.raises(ConfigError, match="valid: nasa, taxi"):
        suite_trace("twitter")
    for spec in DEFAULT_SUITE:  # every vendored file is there
        if spec.source.endswith(".csv.gz"):
            assert (Path(__file__).parents[2] / "src/empire/data/suite" / spec.source).is_file()


def test_a_tiny_suite_runs_end_to_end(tmp_path):
    """Two hand-made traces through every policy: the oracle is never short, the books add up."""
    minutes = [f"2026-01-05T00:{m:02d}:00" for m in range(40)]
    step = ["35"] * 10 + ["140"] * 20 + ["35"] * 10
    flat = ["70"] * 40
    for name, values in (("step.csv", step), ("flat.csv", flat)):
        lines = ["timestamp,value", *(f"{t},{v}" for t, v in zip(minutes, values, strict=True))]
        (tmp_path / name).write_text("\n".join(lines) + "\n")
    traces = (SuiteTrace("step", str(tmp_path / "step.csv"), capacity=10.0),
              SuiteTrace("flat", str(tmp_path / "flat.csv")))  # fmt: skip
    results, kept = run_suite(traces, BacktestSettings(), workers=1, keep="step")
    step_result, flat_result = results
    assert step_result.summaries["reactive"]["under_provisioned_minutes"] == 3  # the HPA step case, by hand
    assert step_result.summaries["oracle"]["under_provisioned_minutes"] == 0
    assert flat_result.capacity == pytest.approx(70 / 40)  # the p99 rule
    assert set(kept) == {"reactive", "empire", "oracle"}
    check = suite_check(results)
    assert check["totals"]["reactive"]["under_provisioned_minutes"] == sum(
        r.summaries["reactive"]["under_provisioned_minutes"] for r in results
    )
