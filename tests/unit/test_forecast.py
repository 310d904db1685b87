"""DemandForecaster, its fallback, the walk-forward evaluation and `empire forecast`.

Synthetic hourly series only (CI has no trace files): a daily and weekly cycle with noise.
Small ``max_iter`` keeps the fits fast; the algorithm is the same.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from empire.cli import main
from empire.errors import PermanentError
from empire.models.evaluation import walk_forward
from empire.models.forecast import (
    LAST_VALUE,
    MODEL,
    SEASONAL_CHANGE,
    DemandForecast,
    DemandForecaster,
    InsufficientHistory,
    fallback_forecast,
    forecast_demand,
    quantile_name,
    seasonal_change,
)

HOUR = 3600.0
FAST = {"max_iter": 40, "learning_rate": 0.15, "min_samples_leaf": 10}


def hourly(n: int, start: str = "2024-01-01T00:00") -> np.ndarray:
    return np.datetime64(start, "s") + np.arange(n) * np.timedelta64(3600, "s")


def demand(n: int, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    daily = 1 + 0.6 * np.sin(2 * np.pi * (t - 6) / 24)
    weekly = np.where((t // 24) % 7 >= 5, 0.6, 1.0)
    return 1000 * daily * weekly * np.exp(rng.normal(0, noise, n))


def fast(**kw: object) -> DemandForecaster:
    return DemandForecaster(**{**FAST, **kw})


# -- estimator contract ----------------------------------------------------------------------------


def test_fit_returns_self_and_learns_underscored_state() -> None:
    y, ts = demand(24 * 21), hourly(24 * 21)
    est = fast()
    assert est.fit(y, ts) is est
    assert est.step_ == HOUR and est.horizon_steps_ == 1
    assert len(est.models_) == len(est.anchor_windows) == len(est.weights_)
    assert np.isclose(est.weights_.sum(), 1.0)
    assert est.validation_mae_ < est.fallback_validation_mae_ * 2
    assert est.get_params()["max_iter"] == 40
    assert not hasattr(clone(est), "models_")


def test_predict_before_fit_is_refused() -> None:
    with pytest.raises(NotFittedError):
        fast().predict(demand(48), hourly(48))


def test_forecast_is_for_origin_plus_horizon_with_ordered_quantiles() -> None:
    n = 24 * 21
    y, ts = demand(n), hourly(n)
    est = fast(horizon=2 * HOUR, quantiles=(0.1, 0.5, 0.9)).fit(y, ts)
    fc = est.forecast(y, ts)
    assert isinstance(fc, DemandForecast)
    assert fc.method == MODEL and not fc.degraded and fc.reason == ""
    assert fc.at == ts[-1] + np.timedelta64(2 * 3600, "s")
    assert fc.quantile(0.1) <= fc.quantile(0.5) == fc.value <= fc.quantile(0.9)
    expected = demand(n + 2)[-1]
    assert abs(fc.value - expected) < 0.25 * expected
    with pytest.raises(ValueError, match="not forecast"):
        fc.quantile(0.99)


def test_predict_quantiles_are_ordered_and_match_predict() -> None:
    n = 24 * 21
    y, ts = demand(n, noise=0.2), hourly(n)
    est = fast(quantiles=(0.9, 0.1, 0.5)).fit(y, ts)
    q = est.predict_quantiles(y, ts)
    med = est.predict(y, ts)
    rows = np.isfinite(med)
    assert rows.sum() > n - 5
    order = np.argsort(est.quantiles)
    assert np.all(np.diff(q[rows][:, order], axis=1) >= 0)
    np.testing.assert_allclose(q[rows, 2], med[rows])


def test_model_beats_the_naive_forecasts_on_a_seasonal_series() -> None:
    n = 24 * 35
    result = walk_forward(demand(n, noise=0.1), hourly(n), forecaster=fast(), refit_every=None)
    m = result.metrics
    assert m["forecast"]["mae"] < m["naive"]["mae"]
    assert m["forecast"]["mae"] < m["seasonal_weekly"]["mae"]
    assert set(result.method[result.scored]) == {MODEL}


def test_horizon_must_be_whole_steps() -> None:
    with pytest.raises(ValueError, match="whole number"):
        fast(horizon=1800.0).fit(demand(24 * 7), hourly(24 * 7))


# -- causality -------------------------------------------------------------------------------------


def test_changing_the_future_never_changes_earlier_forecasts() -> None:
    n = 24 * 21
    y, ts = demand(n), hourly(n)
    est = fast(horizon=2 * HOUR, max_iter=20)
    kwargs = {"forecaster": est, "train_fraction": 0.8, "refit_every": 2 * 86400.0}
    base = walk_forward(y, ts, **kwargs)
    assert base.refits == 3
    k = int(0.8 * n) + 60  # an origin inside the test part, after the first refit
    future = y.copy()
    future[k + 1 :] *= np.random.default_rng(3).uniform(0.2, 5.0, n - k - 1)
    other = walk_forward(future, ts, **kwargs)
    test_index = np.arange(int(0.8 * n), n)
    same = test_index <= k + 2  # origin T - 2 <= k
    np.testing.assert_array_equal(base.forecast[same], other.forecast[same])
    np.testing.assert_array_equal(base.quantile_forecasts[same], other.quantile_forecasts[same])
    assert not np.allclose(base.forecast[~same], other.forecast[~same])


def test_a_fitted_model_reads_only_the_past_of_each_target() -> None:
    n = 24 * 21
    y, ts = demand(n), hourly(n)
    est = fast().fit(y[: n - 48], ts[: n - 48])
    k = n - 30
    future = y.copy()
    future[k + 1 :] = 0.0
    np.testing.assert_array_equal(est.predict(y, ts)[: k + 2], est.predict(future, ts)[: k + 2])


# -- short, gappy and constant series ---------------------------------------------------------------


def test_too_short_a_history_is_refused_with_the_reason() -> None:
    y, ts = demand(30), hourly(30)
    with pytest.raises(InsufficientHistory) as info:
        fast().fit(y, ts)
    exc = info.value
    assert isinstance(exc, PermanentError)
    assert exc.needed == 72 and exc.available < exc.needed
    assert "need 72 valid steps" in str(exc)


def test_forecast_demand_falls_back_and_says_why() -> None:
    y, ts = demand(30), hourly(30)
    fc = forecast_demand(y, ts, forecaster=fast())
    assert fc.degraded and fc.method == SEASONAL_CHANGE
    assert "need 72 valid steps" in fc.reason
    assert fc.at == ts[-1] + np.timedelta64(3600, "s")
    assert fc.quantile(0.1) <= fc.value <= fc.quantile(0.9)
    assert abs(fc.value - demand(31)[-1]) < 0.2 * demand(31)[-1]


def test_fallback_with_less_than_a_day_is_the_last_value() -> None:
    y, ts = demand(10), hourly(10)
    fc = fallback_forecast(y, ts, reason="tiny")
    assert fc.method == LAST_VALUE and fc.value == pytest.approx(y[-1]) and fc.reason == "tiny"
    assert fc.quantile(0.1) <= fc.value <= fc.quantile(0.9)


def test_fallback_with_nothing_valid_recently_is_refused() -> None:
    n = 24 * 10
    y, ts = demand(n), hourly(n)
    valid = np.ones(n, bool)
    valid[-24 * 8 :] = False
    with pytest.raises(InsufficientHistory, match="no valid value"):
        fallback_forecast(y, ts, valid)


def test_seasonal_change_uses_yesterdays_and_last_weeks_change() -> None:
    n = 24 * 8 + 1
    y = demand(n)
    pred, method = seasonal_change(y, np.ones(n, bool), horizon=1, step=HOUR)
    T = n - 1
    expected = y[T - 1] + ((y[T - 24] - y[T - 25]) + (y[T - 168] - y[T - 169])) / 2
    assert pred[T] == pytest.approx(expected)
    assert method[T] == SEASONAL_CHANGE and method[1] == LAST_VALUE and method[0] == ""


def test_gappy_series_with_a_status_mask() -> None:
    n = 24 * 28
    y, ts = demand(n), hourly(n)
    rng = np.random.default_rng(5)
    valid = rng.random(n) > 0.15
    valid[300:340] = False  # a long outage
    garbage = np.where(valid, y, 1e7)  # what an outage looks like in the raw data
    garbage[310] = np.nan
    est = fast().fit(garbage, ts, valid)
    med = est.predict(garbage, ts, valid)
    assert np.isfinite(med[200:]).all()
    assert np.nanmax(med) < 5000  # the masked values never leak in
    result = walk_forward(garbage, ts, valid, forecaster=fast())
    test_valid = valid[result.n_train :]
    assert np.isfinite(result.forecast[test_valid]).all()
    assert 0 < result.metrics["forecast"]["n"] <= test_valid.sum()
    assert result.metrics["forecast"]["mae"] < result.metrics["naive"]["mae"]


def test_constant_series_forecast_the_constant() -> None:
    n = 24 * 10
    for level in (0.0, 250.0):
        y, ts = np.full(n, level), hourly(n)
        fc = forecast_demand(y, ts, forecaster=fast())
        assert fc.value == pytest.approx(level, abs=1e-6)
        assert fc.quantile(0.1) == pytest.approx(level, abs=1e-6)
        assert fc.quantile(0.9) == pytest.approx(level, abs=1e-6)


def test_the_guard_prefers_a_fallback_that_did_better_on_the_holdout() -> None:
    n = 24 * 10
    y, ts = 100 + 50 * np.sin(2 * np.pi * np.arange(n) / 24), hourly(n)  # the fallback is exact here
    fc = forecast_demand(y, ts, forecaster=fast())
    assert fc.method == SEASONAL_CHANGE and "worse than the fallback" in fc.reason
    assert fc.value == pytest.approx(100 + 50 * np.sin(2 * np.pi * n / 24))
    assert forecast_demand(y, ts, forecaster=fast(), guard=False).method == MODEL


def test_walk_forward_falls_back_while_the_history_is_short() -> None:
    n = 24 * 7
    y, ts = demand(n), hourly(n)
    result = walk_forward(y, ts, forecaster=fast(min_history=5 * 86400.0), train_fraction=0.5, refit_every=86400.0)
    # The first test blocks have < 5 days of history: fallback; the last one has the model.
    assert result.method[0] in (SEASONAL_CHANGE, LAST_VALUE)
    assert result.method[-1] == MODEL
    assert any("fallback used" in note for note in result.notes)
    assert np.isfinite(result.forecast).all()


def test_quantile_names() -> None:
    assert [quantile_name(q) for q in (0.1, 0.5, 0.9, 0.975)] == ["p10", "p50", "p90", "p97.5"]


# -- CLI -------------------------------------------------------------------------------------------


def write_trace(path: Path, days: int = 21) -> Path:
    """Half-hourly samples with a status column; hour 100 is marked bad."""
    n = days * 48
    values = demand(n, seed=7) / 2
    stamps = np.datetime64("2024-03-04T00:00", "s") + np.arange(n) * np.timedelta64(1800, "s")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["time", "requests", "status"])
        for i in range(n):
            stamp = np.datetime_as_string(stamps[i], unit="s").replace("T", " ")
            status = "outage" if i in (200, 201) else "ok"
            w.writerow([stamp, f"{values[i]:.1f}", status])
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "trace.csv")
    out = tmp_path / "preds.csv"
    code, stdout, err = run_cli(
        capsys, "forecast", "--input", str(trace), "--value-column", "requests", "--status-column", "status",
        "--timestamp-column", "time", "--step", "1h", "--horizon", "1h", "--train-fraction", "0.8",
        "--output", str(out),
    )  # fmt: skip
    assert code == 0, err
    for label in ("empire forecaster", "naive (last value)", "seasonal naive daily", "seasonal naive weekly"):
        assert label in stdout
    assert "MASE_1" in stdout and "MASE_d" in stdout
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 21 * 24 - int(0.8 * 21 * 24)
    assert list(rows[0])[:6] == ["timestamp", "actual", "forecast", "p10", "p50", "p90"]
    assert rows[0]["timestamp"] == "2024-03-20 19:00:00"
    for row in rows:
        assert float(row["p10"]) <= float(row["p50"]) <= float(row["p90"])
        assert row["forecast"] == row["p50"]


def test_cli_bad_column_lists_the_available_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = write_trace(tmp_path / "trace.csv", days=2)
    code, _, err = run_cli(
        capsys, "forecast", "--input", str(trace), "--value-column", "nope", "--timestamp-column", "time"
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "no column 'nope'" in err and "available columns: time, requests, status" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--step", "soon"], "--step"),
        (["--step", "45m", "--horizon", "90m"], "not a multiple"),
        (["--horizon", "90m"], "--horizon"),
        (["--train-fraction", "1.5"], "--train-fraction"),
        (["--status-column", "state"], "no column 'state'"),
    ],
)
def test_cli_bad_options_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    trace = write_trace(tmp_path / "trace.csv", days=2)
    argv = ["forecast", "--input", str(trace), "--value-column", "requests", "--timestamp-column", "time", *extra]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_missing_file_and_bad_timestamp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "forecast", "--input", str(tmp_path / "none.csv"), "--value-column", "v")
    assert code == 2 and "none.csv: no such CSV file" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,v\n2024-01-01 00:00:00,1\nyesterday,2\n")
    code, _, err = run_cli(capsys, "forecast", "--input", str(bad), "--value-column", "v")
    assert code == 2 and "line 3" in err and "'yesterday' is not a timestamp" in err
    bad.write_text("timestamp,v\n2024-01-01 00:00:00,1\n2024-01-01 01:00:00,many\n")
    code, _, err = run_cli(capsys, "forecast", "--input", str(bad), "--value-column", "v")
    assert code == 2 and "'many' is not a number" in err


def test_cli_series_too_short_to_score_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = tmp_path / "tiny.csv"
    tiny.write_text("timestamp,v\n" + "".join(f"2024-01-01 {h:02d}:00:00,{h}\n" for h in range(10)))
    code, out, err = run_cli(capsys, "forecast", "--input", str(tiny), "--value-column", "v")
    assert code == 1
    assert "0 scored" in out and "last_value 2" in out and "need 72 valid steps" in out
    assert "no test step could be scored" in err


def test_cli_refuses_a_grid_spanning_millennia(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rows from the years 1 to 9999 would have allocated the hourly grid between them."""
    span = tmp_path / "span.csv"
    span.write_text("timestamp,v\n0001-01-01 00:00:00,1\n2024-01-01 00:00:00,2\n9999-01-01 00:00:00,3\n")
    code, _, err = run_cli(capsys, "forecast", "--input", str(span), "--value-column", "v")
    assert code == 2 and "the rows span 3,651,694 days, more than 1,000,000 steps of 1h" in err
