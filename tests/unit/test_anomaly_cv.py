"""Leave-one-group-out cross-validation of detector parameters (empire.models.evaluation)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from empire.models.anomaly import AnomalyDetector
from empire.models.evaluation import leave_one_group_out


def test_the_held_out_group_never_takes_part_in_choosing_its_parameters() -> None:
    # Candidate 1 is best only on group "b": chosen on everything, it is never chosen for "b"
    # itself, so "b"'s held-out score is the other candidate's, below its in-sample score.
    groups = ["a", "a", "b", "b", "c"]
    table = {0: [1.0, 1.0, 0.0, 0.0, 1.0], 1: [0.9, 0.9, 5.0, 5.0, 0.9]}

    def score(k: int, idx: np.ndarray) -> float:
        return float(np.mean([table[k][i] for i in idx]))

    cv = leave_one_group_out(groups, [{"p": 0}, {"p": 1}], score)
    assert cv.chosen == {"a": 1, "b": 0, "c": 1}
    assert cv.held_out == {"a": 0.9, "b": 0.0, "c": 0.9}
    assert cv.in_sample == 1 and cv.in_sample_scores["b"] == 5.0
    assert cv.mean == pytest.approx(0.6) and cv.worst == 0.0
    assert cv.in_sample_mean > cv.mean  # the gap that says "tuned, not general"


def test_ties_keep_the_first_candidate_and_unscorable_groups_are_left_out_of_the_mean() -> None:
    cv = leave_one_group_out(["x", "y", "z"], [{}, {"q": 1}],
                             lambda k, idx: math.nan if list(idx) == [2] else 1.0)  # fmt: skip
    assert set(cv.chosen.values()) == {0}
    assert cv.mean == 1.0 and math.isnan(cv.held_out["z"])


def planted(kind: str, seed: int, n: int = 900) -> tuple[np.ndarray, int]:
    rng = np.random.default_rng(seed)
    x = rng.normal(10.0, 1.0, n)
    at = 600 + 20 * seed
    if kind == "spike":
        x[at] += 12.0
    else:  # a level shift
        x[at:] += 6.0
    return x, at


def test_cross_validating_real_detectors_on_a_tiny_corpus() -> None:
    series = [planted(kind, seed) for kind in ("spike", "shift") for seed in (0, 1)]
    groups = ["spike", "spike", "shift", "shift"]
    candidates = [{"suppress": 50}, {"suppress": 50, "score_scale": 1000.0}]  # the second never fires
    outputs = {}

    def score(k: int, idx: np.ndarray) -> float:
        hits = 0.0
        for i in idx:
            if (k, i) not in outputs:
                x, _ = series[i]
                det = AnomalyDetector(season=None, learning_period=200, **candidates[k])
                outputs[k, i] = det.fit(x).scores_
            x, at = series[i]
            flagged = np.flatnonzero(outputs[k, i] >= 0.5)
            hits += float(np.any((flagged >= at) & (flagged < at + 20))) - 0.1 * np.sum(flagged < at)
        return hits / len(idx)

    cv = leave_one_group_out(groups, candidates, score)
    assert cv.chosen == {"shift": 0, "spike": 0} and cv.in_sample == 0
    assert cv.held_out["spike"] == pytest.approx(1.0) and cv.held_out["shift"] > 0.5
