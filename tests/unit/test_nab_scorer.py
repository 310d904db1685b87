"""The NAB v1.1 scorer in benchmarks/: a hand-computed case, the vectorized sweep, the fixtures."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import nab_score as ns


def sigma(y: float) -> float:
    """The scaled sigmoid, restated by hand from SCORING.md."""
    return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


# 20 five-minute rows; one window on rows 10..13 (W = 4); probation = floor(0.15 * 20) = 3 rows.
STAMPS = np.array("2014-01-01T00:00", dtype="datetime64[m]") + 5 * np.arange(20)
WINDOWS = {"a.csv": [["2014-01-01 00:50:00.000000", "2014-01-01 01:05:00.000000"]]}
SCORES = np.zeros(20)
SCORES[[1, 5, 12, 15]] = [1.0, 0.9, 0.8, 0.7]  # row 1 is in probation and must not count


def test_scaled_sigmoid_values() -> None:
    np.testing.assert_allclose(ns.scaled_sigmoid([-1, -0.5, 0, 1]), [0.98661, 0.84828, 0, -0.98661], atol=1e-5)
    assert float(ns.scaled_sigmoid(3.5)) == -1.0


def test_probation_length() -> None:
    assert ns.probation_length(20) == 3
    assert ns.probation_length(4032) == 604
    assert ns.probation_length(22695) == 750


def test_hand_computed_case_at_fixed_threshold() -> None:
    fp_before = -0.11  # row 5: no window has ended yet, full penalty
    tp = sigma(-(13 - 12 + 1) / 4) / sigma(-1.0)  # row 12 in [10, 13]
    fp_after = 0.11 * sigma(abs(13 - 15) / (4 - 1))  # row 15, after the window
    expected_raw = fp_before + tp + fp_after
    cs = ns.score_corpus({"a.csv": SCORES}, {"a.csv": STAMPS}, WINDOWS, "standard", threshold=0.5)
    assert cs.raw == pytest.approx(expected_raw, abs=1e-12)
    assert cs.normalized == pytest.approx(100 * (expected_raw + 1) / 2)
    assert (cs.tp, cs.fp, cs.fn) == (1, 2, 0)


def test_hand_computed_optimal_threshold_and_profiles() -> None:
    # Candidates: 1.1 (-1), 0.9 (-1.11), 0.8 (best), 0.7, 0.0 (every row a detection).
    best = -0.11 + sigma(-0.5) / sigma(-1.0)
    cs = ns.score_corpus({"a.csv": SCORES}, {"a.csv": STAMPS}, WINDOWS, "standard")
    assert cs.threshold == 0.8
    assert cs.raw == pytest.approx(best)
    low_fn = ns.score_corpus({"a.csv": SCORES}, {"a.csv": STAMPS}, WINDOWS, "reward_low_FN_rate")
    assert low_fn.normalized == pytest.approx(100 * (best + 2) / 3)
    # At threshold 0 every scored row is a detection: the window's first row counts (A = 1).
    after = sum(sigma((i - 13) / 3) for i in range(14, 20))
    everything = 1.0 - 0.11 * 7 + 0.11 * after
    thresholds, raws = ns.optimize_threshold(
        [SCORES], [ns.sweep_scores(STAMPS, WINDOWS["a.csv"], ns.PROFILES["standard"])], ns.PROFILES["standard"]
    )
    assert thresholds[0] == 1.1 and raws[0] == -1.0
    assert raws[-1] == pytest.approx(everything)


def test_missed_window_costs_fn_weight() -> None:
    cs = ns.score_corpus({"a.csv": np.zeros(20)}, {"a.csv": STAMPS}, WINDOWS, "standard", threshold=0.5)
    assert cs.raw == -1.0 and cs.normalized == 0.0 and cs.fn == 1


def test_vectorized_sweep_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    scores, stamps, windows = {}, {}, {}
    base = np.datetime64("2014-01-01T00:00")
    for f in range(4):
        n = 400 + 50 * f
        t = base + np.arange(n) * np.timedelta64(5, "m")
        s = np.round(rng.random(n), 2)  # ties on purpose
        name = f"f{f}.csv"
        w = []
        for lo in rng.choice(np.arange(80, n - 40, 60), size=f, replace=False):
            w.append([str(t[lo]).replace("T", " "), str(t[lo + 20]).replace("T", " ")])
        scores[name], stamps[name], windows[name] = s, t, sorted(w)
    for profile, weights in ns.PROFILES.items():
        names = sorted(scores)
        rows = [ns.sweep_scores(stamps[n], windows[n], weights) for n in names]
        thresholds, raws = ns.optimize_threshold([scores[n] for n in names], rows, weights)
        for th, raw in zip(thresholds[::7], raws[::7], strict=True):
            brute, *_ = ns.score_at_threshold([scores[n] for n in names], rows, weights, th)
            assert raw == pytest.approx(brute, abs=1e-9), profile


FIXTURES = ns.default_data_dir() / "fixtures"


@pytest.mark.skipif(not FIXTURES.exists(), reason="needs the shared NAB data (not in a clean clone)")
def test_fixture_conformance() -> None:
    data_dir = ns.default_data_dir()
    windows = ns.load_windows(data_dir)
    expected = {"numenta": (61.30, 54.31, 66.20), "windowedGaussian": (12.07, 4.81, 16.04)}
    for det, values in expected.items():
        res = ns.load_results(FIXTURES / f"{det}_dev_scores.csv.gz")
        scores = {k: v[1] for k, v in res.items()}
        stamps = {k: ns.parse_timestamps(v[0]) for k, v in res.items()}
        got = ns.score_all_profiles(scores, stamps, windows)
        assert tuple(round(cs.normalized, 2) for cs in got.values()) == values
        if det == "numenta":
            fixed = ns.score_all_profiles(scores, stamps, windows, threshold=0.5)
            assert tuple(round(cs.normalized, 2) for cs in fixed.values()) == (57.06, 42.06, 64.71)


def test_per_file_breakdown_adds_up_to_the_corpus_score() -> None:
    (report,) = ns.per_file({"a.csv": SCORES}, {"a.csv": STAMPS}, WINDOWS, threshold=0.5)
    cs = ns.score_corpus({"a.csv": SCORES}, {"a.csv": STAMPS}, WINDOWS, "standard", threshold=0.5)
    assert report.file == "a.csv" and report.raw == pytest.approx(cs.raw)
    assert (report.tp, report.fp) == (1, 2)
    ((offset, earned),) = report.windows
    assert offset == 0.5  # row 12 of the window on rows 10..13
    assert earned == pytest.approx(sigma(-(13 - 12 + 1) / 4) / sigma(-1.0))
    (missed,) = ns.per_file({"a.csv": np.zeros(20)}, {"a.csv": STAMPS}, WINDOWS, threshold=0.5)
    assert missed.windows == [None] and missed.raw == -1.0 and missed.tp == 0
