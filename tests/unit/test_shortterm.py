"""The short-horizon quantile model behind predictive scaling (`empire.models.shortterm`): calibration,
causality, gaps, the registry round trip, pinball loss and model selection against the fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from empire.models.shortterm import (
    CANDIDATE,
    NAIVE,
    SEASONAL_NAIVE,
    LevelQuantileModel,
    choose_model,
    pinball_loss,
)

# -- the model ------------------------------------------------------------------------------------------


def test_quantile_forecast_of_poisson_demand_is_calibrated():
    rng = np.random.default_rng(1)
    y = rng.poisson(40, 20_000).astype(float)
    model = LevelQuantileModel(horizon=2, window=10).fit(y[:10_000])
    test = y[10_000:]
    for q in (0.5, 0.9, 0.98):
        pred = model.predict(test, q)[:-2]
        coverage = np.mean(test[2:] <= pred)
        assert coverage == pytest.approx(q, abs=0.02)
    assert model.predict(test, 0.98)[-1] > model.predict(test, 0.9)[-1] > model.predict(test, 0.5)[-1]


def test_forecasts_are_causal():
    rng = np.random.default_rng(2)
    y = rng.poisson(30, 3000).astype(float)
    for kind, season in ((CANDIDATE, 0), (SEASONAL_NAIVE, 1440)):
        model = LevelQuantileModel(2, 10, season, kind).fit(y)
        before = model.predict(y, 0.9)
        changed = y.copy()
        changed[2000:] *= 5  # the future changes ...
        after = model.predict(changed, 0.9)
        np.testing.assert_array_equal(before[:2000], after[:2000])  # ... earlier forecasts do not


def test_gaps_and_short_or_constant_series():
    y = np.full(200, 25.0)
    y[50:60] = np.nan
    model = LevelQuantileModel(2, 10).fit(y)
    assert model.predict(y, 0.98)[-1] == pytest.approx(25.0)  # constant: no spread
    assert np.isnan(model.predict(np.full(20, np.nan), 0.9)[-1])  # nothing known: no forecast
    with pytest.raises(ValueError, match="usable residuals"):
        LevelQuantileModel(2, 10).fit(np.arange(10.0))


def test_model_round_trips_through_a_registry_record():
    y = np.random.default_rng(3).poisson(12, 2000).astype(float)
    model = LevelQuantileModel(3, 10).fit(y)
    again = LevelQuantileModel.from_record(model.to_record())
    np.testing.assert_allclose(again.predict(y, 0.95), model.predict(y, 0.95))


def test_pinball_loss():
    actual, forecast = np.array([10.0, 10.0, np.nan]), np.array([8.0, 12.0, 1.0])
    assert pinball_loss(actual, forecast, 0.9) == pytest.approx((0.9 * 2 + 0.1 * 2) / 2)


# -- model selection ------------------------------------------------------------------------------------


def test_a_model_worse_than_seasonal_naive_is_not_used():
    # an exactly repeating daily square wave: the same minute yesterday knows each edge in advance,
    # the recent level only learns it 10 minutes late
    day = np.where((np.arange(1440) // 30) % 2 == 0, 10.0, 200.0)
    y = np.tile(day, 4)
    choice = choose_model(y, horizon=2, window=10, season=1440, quantile=0.9, validation=1440)
    assert choice.baseline == SEASONAL_NAIVE
    assert choice.chosen.kind == SEASONAL_NAIVE and choice.other.kind == CANDIDATE
    assert choice.losses[SEASONAL_NAIVE] < choice.losses[CANDIDATE]
    assert choice.reason.startswith("candidate not used: worse than seasonal_naive")


def test_the_candidate_is_used_when_it_beats_seasonal_naive():
    rng = np.random.default_rng(4)
    level = np.repeat(rng.uniform(10, 100, 4 * 24), 60)  # level shifts every hour, unrelated to yesterday
    y = rng.poisson(level).astype(float)
    choice = choose_model(y, horizon=2, window=10, season=1440, quantile=0.9, validation=1440)
    assert choice.chosen.kind == CANDIDATE and choice.losses[CANDIDATE] < choice.losses[SEASONAL_NAIVE]


def test_short_history_is_compared_with_plain_naive():
    y = np.random.default_rng(5).poisson(20, 600).astype(float)
    choice = choose_model(y, horizon=2, window=10, season=1440, quantile=0.9, validation=150)
    assert choice.baseline == NAIVE and set(choice.losses) == {CANDIDATE, NAIVE}


def test_one_origin_forecast_matches_the_series_forecast():
    """The per-tick path (mean of the level window, then the quantile) equals `predict` at that origin."""
    rng = np.random.default_rng(6)
    y = rng.poisson(rng.uniform(5, 80, 4 * 1440).repeat(1)).astype(float)
    for model in (LevelQuantileModel(2, 10, 0, CANDIDATE), LevelQuantileModel(3, 10, 1440, SEASONAL_NAIVE)):
        model.fit(y)
        t = len(y) - 1
        first, last = model.window_back()
        level = float(np.mean(y[t - first : t - last + 1]))
        vol = model.recent_volatility(y[t - model.recent_steps() + 1 : t + 1])
        assert model.from_level(level, 0.9, vol) == pytest.approx(model.predict(y, 0.9)[t])


def test_headroom_follows_recent_volatility():
    """Calm spells get a narrow band, bursty ones a wide one, in the same workload."""
    rng = np.random.default_rng(7)
    calm = rng.poisson(50, 3000).astype(float)
    bursty = rng.poisson(50, 3000) * rng.choice([1.0, 3.0], 3000, p=[0.8, 0.2])
    y = np.concatenate([calm, bursty, calm, bursty])
    model = LevelQuantileModel(2, 10).fit(y)
    pred = model.predict(y, 0.95)
    assert np.nanmean(pred[3100:5900]) > 1.5 * np.nanmean(pred[100:2900])
    for part in (slice(100, 2900), slice(3100, 5900)):  # each calibrated on its own
        hit = np.mean(y[part.start + 2 : part.stop + 2] <= pred[part])
        assert hit == pytest.approx(0.95, abs=0.03)


def test_the_best_level_window_is_chosen_on_validation():
    y = np.repeat(np.random.default_rng(8).uniform(10, 100, 400), 10)  # steps: the last value knows best
    choice = choose_model(y, horizon=2, window=(1, 10, 30), season=1440, quantile=0.9, validation=1000)
    assert choice.chosen.window == 1 and set(choice.windows) == {1, 10, 30}
