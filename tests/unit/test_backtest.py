"""The backtest's books, cluster model, oracle and trace loading, on traces small enough to check by hand."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from empire.agent.backtest.cluster import Books, SimulatedCluster
from empire.agent.backtest.engine import BacktestSettings, backtest_policy
from empire.agent.backtest.report import format_table, target_check
from empire.agent.backtest.trace import DemandTrace, default_trace_path, load_trace, synthetic_trace
from empire.agent.clock import FakeClock
from empire.errors import ConfigError

START = datetime(2026, 1, 1, tzinfo=UTC)


def test_books_on_a_hand_computed_trace():
    """capacity 10, start-up 2 minutes, one ready replica; scale to 3 at minute 1, to 1 at minute 4.

    minute  demand  status  requested  ready  short   counted
      0        8     ok        1         1     -        yes
      1       25     ok        3         1     15       yes  (the 2 new ones are ready at minute 3)
      2       25     ok        3         1     15       yes
      3       25     ok        3         3     -        yes
      4       12     ok        1         1     2        yes  (removal is immediate)
      5       99     outage    1         1     (69)     no   (not counted at all)
      6       10     ok        1         1     -        yes  (equal to capacity is not short)
    """
    clock = FakeClock(START)
    books = Books(capacity=10)
    cluster = SimulatedCluster(clock, timedelta(minutes=2), replicas=1, books=books)
    demand = [8, 25, 25, 25, 12, 99, 10]
    ok = [True, True, True, True, True, False, True]
    plan = {1: 3, 4: 1}
    for minute, (d, good) in enumerate(zip(demand, ok, strict=True)):
        if minute in plan:
            cluster.scale(plan[minute])
        books.count(d, good, cluster.replicas, cluster.ready())
        clock.advance(60)
    s = books.summary()
    assert s["under_provisioned_minutes"] == 3
    assert s["unserved_demand"] == 15 + 15 + 2
    assert s["replica_hours"] == pytest.approx((1 + 3 + 3 + 3 + 1 + 1) / 60, abs=0.05)
    assert books.replica_minutes == 12 and s["counted_minutes"] == 6
    assert s["scaling_actions"] == 2
    assert books.ready == [1, 1, 1, 3, 1, 1, 1]


def test_removal_takes_the_replicas_not_ready_yet_first():
    clock = FakeClock(START)
    cluster = SimulatedCluster(clock, timedelta(minutes=2), replicas=2)
    clock.advance(60)
    cluster.scale(5)  # 3 starting
    cluster.scale(3)  # 2 of the starting ones go
    assert cluster.replicas == 3 and cluster.ready() == 2
    clock.advance(120)
    assert cluster.ready() == 3
    assert cluster.scale(3) is False


def _trace(values: list[float], ok: list[bool] | None = None) -> DemandTrace:
    arr = np.asarray(values, dtype=float)
    return DemandTrace("t", START, arr, np.asarray(ok if ok is not None else [True] * len(arr)))


def test_oracle_is_never_short_and_pays_the_cheapest_schedule():
    # need = ceil(d / 10): 1 1 4 1 1 1 4 4 1 1; with a 2-minute start-up the oracle holds the 3 extra
    # replicas from minute 0 to 2 (requested 2 minutes ahead) and from 4 to 7; the 1-minute dips (3, 8 ...)
    # are not worth a restart. Minimal requested replica-minutes: 4 4 4 1 4 4 4 4 1 1 = 31.
    trace = _trace([5, 10, 40, 10, 10, 10, 31, 40, 3, 0])
    run = backtest_policy("oracle", trace, BacktestSettings(capacity=10, startup_delay=120))
    s = run.books.summary()
    assert s["under_provisioned_minutes"] == 0
    assert run.books.replica_minutes == 31
    assert run.books.requested == [4, 4, 4, 1, 4, 4, 4, 4, 1, 1]


def test_trace_per_minute_with_status_and_gzip(tmp_path: Path):
    body = "timestamp,requests,status\n1995-07-01 00:00:00,42,ok\n1995-07-01 00:01:00,,not_logged\n"
    body += "1995-07-01 00:03:00,7,outage\n1995-07-01 00:04:00,9,ok\n"
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(body.encode()))
    trace = load_trace(path)
    assert len(trace) == 5 and trace.start == datetime(1995, 7, 1, tzinfo=UTC)
    np.testing.assert_array_equal(trace.values, [42, np.nan, np.nan, 7, 9])  # a gap is not a zero
    assert trace.ok.tolist() == [True, False, False, False, True]
    assert trace.valid_minutes == 2


def test_trace_coarser_step_becomes_an_interpolated_rate(tmp_path: Path):
    path = tmp_path / "taxi.csv"
    path.write_text("timestamp,value\n2014-07-01 00:00:00,300\n2014-07-01 00:30:00,600\n2014-07-01 01:00:00,600\n")
    trace = load_trace(path)
    assert len(trace) == 90
    assert trace.values[15] == pytest.approx(10.5, abs=0.5)  # mid of the first interval: 300 / 30 min
    assert trace.values[45] == pytest.approx(20.0, abs=0.5)
    assert trace.values.sum() == pytest.approx(1500, rel=0.05)  # totals kept
    noisy = load_trace(path, noise="poisson", seed=1, scale=2)
    assert noisy.values.sum() == pytest.approx(3000, rel=0.1) and np.all(noisy.values == np.round(noisy.values))


def test_trace_errors_name_the_problem(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("time,value\n1,2\n")
    with pytest.raises(ConfigError, match="no column 'timestamp'; available columns: time, value"):
        load_trace(path)
    path.write_text("timestamp,value\n2026-01-01T00:00:00Z,abc\n2026-01-01T00:01:00Z,1\n")
    with pytest.raises(ConfigError, match=r"bad.csv: line 2: value 'abc' is not a number"):
        load_trace(path)
    path.write_text("timestamp,value\nyesterday,3\n2026-01-01T00:01:00Z,1\n")
    with pytest.raises(ConfigError, match=r"bad.csv: line 2: timestamp 'yesterday' is not a timestamp"):
        load_trace(path)
    with pytest.raises(ConfigError, match="no column 'demand'"):
        load_trace(path, value_column="demand")


def test_shipped_trace_is_the_nasa_per_minute_trace():
    trace = load_trace()
    assert default_trace_path().name == "nasa_http_per_minute.csv.gz"
    assert len(trace) == 89_280 and trace.valid_minutes == 82_068
    assert np.nansum(trace.values) == 3_461_603  # ITA total minus the 7 requests past 08-31 23:59


def test_synthetic_trace_is_reproducible():
    a, b = synthetic_trace(2, seed=3), synthetic_trace(2, seed=3)
    np.testing.assert_array_equal(a.values, b.values)
    assert len(a) == 2880 and a.values.mean() > 10


def test_table_states_whether_the_target_is_met():
    trace = _trace([5, 10, 40, 10, 10, 10, 31, 40, 3, 0])
    settings = BacktestSettings()
    runs = {"oracle": backtest_policy("oracle", trace, settings)}
    assert target_check(runs) is None
    runs = {"reactive": runs["oracle"], "empire": runs["oracle"]}
    assert target_check(runs)["met"] is True  # 0 <= 0 / 2 and equal cost
    assert "target MET" in format_table(runs, trace, settings)


def test_a_trace_spanning_millennia_is_refused_before_allocating(tmp_path: Path):
    """Years 0001-9999 asked numpy for 78 GiB of minutes (a MemoryError traceback)."""
    from empire.agent.backtest.trace import MAX_TRACE_DAYS

    path = tmp_path / "span.csv"
    path.write_text("timestamp,value\n0001-01-01T00:00:00Z,1\n9999-01-01T00:00:00Z,2\n")
    with pytest.raises(ConfigError, match=f"spans 3,651,694 days .0001-01-01 to 9999-01-01.; a backtest replays at "
                                          f"most {MAX_TRACE_DAYS} days"):  # fmt: skip
        load_trace(path)
    with pytest.raises(ConfigError, match="the first 1 days of the trace hold fewer than two rows"):
        load_trace(path, days=1)  # --days cuts before the bound


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--plot", "x.txt"],
            "--plot x.txt: unsupported format 'txt'; use one of: eps, jpeg, jpg, pdf, png, ps, svg, svgz, tif, tiff, webp",
        ),
        (["--json", "."], "--json .: is a directory; give a file name"),
        (["--min-replicas", "5", "--max-replicas", "2"], "--min-replicas 5 is above --max-replicas 2"),
    ],
)
def test_output_options_are_checked_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
):
    """`--plot x.txt` failed in matplotlib after the whole replay (30 s on the default trace)."""
    from empire.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["backtest", "--no-progress", *argv]) == 2
    out, err = capsys.readouterr()
    assert err == f"empire: error: {message}\n" and out == ""
    assert list(tmp_path.iterdir()) == []


def test_numbers_that_are_not_finite_are_usage_errors(capsys: pytest.CaptureFixture[str]):
    from empire.cli import main

    with pytest.raises(SystemExit) as info:
        main(["backtest", "--days", "nan"])
    assert info.value.code == 2 and "argument --days: 'nan' is not a finite number" in capsys.readouterr().err


def test_capacity_p99_applies_the_suite_rule_to_any_trace(tmp_path: Path):
    """`--capacity p99` gives a CSV of any volume the suite's capacity: its p99 minute needs 40 replicas."""
    import json

    from empire.cli import main

    rows = ["timestamp,value"] + [
        f"{(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)).isoformat()},{4000 + 40 * (i % 50)}"
        for i in range(600)
    ]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "o.json"
    args = ["backtest", str(tmp_path / "t.csv"), "--capacity", "p99", "--policies", "reactive", "--no-progress"]
    main([*args, "--json", str(out)])
    capacity = json.loads(out.read_text())["settings"]["capacity"]
    assert capacity == pytest.approx(np.percentile([4000 + 40 * (i % 50) for i in range(600)], 99) / 40)
    with pytest.raises(SystemExit):
        main(["backtest", "--capacity", "p98"])  # a usage error names it
