"""Anomaly scores for the signals that anomaly rules watch: one streaming detector per signal.

This is the *model* stage for alerting (stateful, no I/O): `score()` feeds each new sample to the
signal's `empire.models.anomaly.AnomalyDetector` (`update`, strictly causal) and returns the
latest score per (target, signal); `rules.evaluate()` compares it with each rule's threshold. A
sample that is not newer than the last one scored is not fed again (the detector must see each
point once, in time order). A detector's own `threshold` is the lowest threshold of the rules on
its signal, so its post-detection suppression never hides a point a rule would alert on.

`warm(key, threshold, points)` fits a detector on history (e.g. `Observer.history`) so that a
restart does not wait out the detector's `learning_period` (its first points score 0) again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from empire.agent.types import Observation, SampleStatus
from empire.policies.alerting import RuleKind
from empire.policies.schema import Policy

__all__ = ["AnomalyScorer", "rule_detector", "watched_signals"]

logger = logging.getLogger(__name__)

SignalKey = tuple[str, str]


def watched_signals(policy: Policy) -> dict[SignalKey, float]:
    """(target, signal) -> lowest anomaly-rule threshold on it."""
    out: dict[SignalKey, float] = {}
    for r in policy.alerting.rules:
        if r.kind == RuleKind.anomaly:
            key = (r.target, r.signal)
            out[key] = min(out.get(key, 1.0), r.threshold)
    return out


def rule_detector(threshold: float) -> Any:
    """The detector the daemon runs for anomaly rules at ``threshold`` (``benchmarks/anomaly.py``
    scores this one, so the benchmark's ``shipped_rule`` figure is what the daemon does)."""
    from empire.models.anomaly import AnomalyDetector

    return AnomalyDetector(threshold=threshold)


class AnomalyScorer:
    def __init__(self, factory: Callable[[float], Any] | None = None) -> None:
        self._factory = factory or rule_detector
        self._detectors: dict[SignalKey, Any] = {}
        self._thresholds: dict[SignalKey, float] = {}
        self._last_at: dict[SignalKey, datetime] = {}
        self.scores: dict[SignalKey, float] = {}

    def _detector(self, key: SignalKey, threshold: float) -> Any:
        if key not in self._detectors or self._thresholds.get(key) != threshold:
            self._detectors[key] = self._factory(threshold)
            self._thresholds[key] = threshold
            self._last_at.pop(key, None)
            self.scores.pop(key, None)
        return self._detectors[key]

    def warm(self, key: SignalKey, threshold: float, points: Sequence[tuple[datetime, float]]) -> None:
        """Fit the signal's detector on past (timestamp, value) points, oldest first."""
        pts = sorted((p for p in points if math.isfinite(p[1])), key=lambda p: p[0])
        if not pts:
            return
        det = self._detector(key, threshold)
        det.fit([v for _, v in pts], timestamps=[t.timestamp() for t, _ in pts])
        self._last_at[key] = pts[-1][0]

    def score(self, policy: Policy, observations: Mapping[str, Observation]) -> dict[SignalKey, float]:
        watched = watched_signals(policy)
        for gone in set(self._detectors) - set(watched):
            self._detectors.pop(gone, None)
            self.scores.pop(gone, None)
        out: dict[SignalKey, float] = {}
        for key, threshold in watched.items():
            det = self._detector(key, threshold)
            obs = observations.get(key[0])
            sample = obs.sample(key[1]) if obs else None
            ok = sample is not None and sample.status == SampleStatus.ok and sample.value is not None
            if ok and sample is not None and sample.value is not None and math.isfinite(sample.value):
                at = sample.at or (obs.at if obs else None)
                last = self._last_at.get(key)
                if at is not None and (last is None or at > last):
                    try:
                        score = float(det.update(sample.value, at.timestamp()))
                    except Exception as exc:  # a model failure must not stop alerting on other rules
                        logger.warning("anomaly score of %s/%s unavailable: %s", key[0], key[1], exc)
                    else:
                        self._last_at[key] = at
                        if math.isfinite(score):
                            self.scores[key] = min(1.0, max(0.0, score))
                        else:  # no score is "no data" for the rules, never "anomalous"
                            self.scores.pop(key, None)
            if key in self.scores:
                out[key] = self.scores[key]
        return out
