"""The anomaly-scoring stage for anomaly rules: each new sample scored once, in order, per watched signal."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from empire.agent.alerting.scoring import AnomalyScorer, watched_signals
from empire.agent.types import Observation, Sample, SampleStatus
from empire.policies.schema import Policy, parse_policy

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def policy(*thresholds: float) -> Policy:
    rules = [{"name": f"qa-{i}", "kind": "anomaly", "target": "gen", "signal": "queue", "threshold": t}
             for i, t in enumerate(thresholds)]  # fmt: skip
    return parse_policy(
        {"targets": [{"name": "gen", "workload": {"name": "g"}, "max_replicas": 5,
                      "signals": [{"name": "queue", "query": "q", "target": 50}]}],
         "alerting": {"rules": rules}}
    )  # fmt: skip


def obs(value: float | None, at: datetime, status: SampleStatus = SampleStatus.ok) -> dict[str, Observation]:
    return {"gen": Observation("gen", at, (Sample("queue", value, at, 0.0, status),), 3)}


class Stub:
    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.seen: list[tuple[float, float]] = []

    def update(self, value: float, timestamp: float) -> float:
        self.seen.append((value, timestamp))
        return math.nan if value < 0 else min(1.0, value / 1000)


def test_each_sample_is_scored_once_and_in_order() -> None:
    made: list[Stub] = []
    scorer = AnomalyScorer(lambda th: made.append(Stub(th)) or made[-1])
    pol = policy(0.9, 0.7)
    assert watched_signals(pol) == {("gen", "queue"): 0.7}
    assert scorer.score(pol, obs(500, T0)) == {("gen", "queue"): 0.5}
    assert scorer.score(pol, obs(500, T0)) == {("gen", "queue"): 0.5}  # same sample: not fed again
    assert scorer.score(pol, obs(None, T0 + timedelta(seconds=15), SampleStatus.missing)) == {("gen", "queue"): 0.5}
    assert scorer.score(pol, obs(900, T0 + timedelta(seconds=30))) == {("gen", "queue"): 0.9}
    assert scorer.score(pol, obs(-1, T0 + timedelta(seconds=45))) == {}  # NaN score: no data, not an anomaly
    assert [v for v, _ in made[0].seen] == [500, 900, -1] and made[0].threshold == 0.7


def test_detector_rebuilt_when_thresholds_change_and_dropped_with_the_rule() -> None:
    made: list[Stub] = []
    scorer = AnomalyScorer(lambda th: made.append(Stub(th)) or made[-1])
    scorer.score(policy(0.9), obs(100, T0))
    scorer.score(policy(0.8), obs(100, T0 + timedelta(seconds=15)))
    assert [d.threshold for d in made] == [0.9, 0.8]
    assert scorer.score(policy(), obs(100, T0 + timedelta(seconds=30))) == {}


def test_real_detector_flags_a_spike_after_warming_on_history() -> None:
    rng = np.random.default_rng(7)
    history = [(T0 + timedelta(seconds=15 * i), 300 + 20 * math.sin(i / 50) + rng.normal(0, 5)) for i in range(800)]
    scorer = AnomalyScorer()
    scorer.warm(("gen", "queue"), 0.9, history)
    pol = policy(0.9)
    at = T0 + timedelta(seconds=15 * 800)
    normal = scorer.score(pol, obs(302.0, at))[("gen", "queue")]
    spike = scorer.score(pol, obs(2500.0, at + timedelta(seconds=15)))[("gen", "queue")]
    assert normal < 0.5 <= 0.9 <= spike


def test_scores_are_exported_per_watched_signal_only() -> None:
    from prometheus_client import CollectorRegistry

    from empire.agent.alerting.metrics import AlertMetrics

    reg = CollectorRegistry()
    metrics = AlertMetrics(reg)
    scorer = AnomalyScorer(factory=Stub)
    metrics.set_anomaly_scores(scorer.score(policy(0.9), obs(400.0, T0)))
    assert reg.get_sample_value("empire_anomaly_score", {"target": "gen", "signal": "queue"}) == 0.4
    metrics.set_anomaly_scores(scorer.score(policy(), obs(900.0, T0 + timedelta(minutes=1))))  # rule removed
    assert reg.get_sample_value("empire_anomaly_score", {"target": "gen", "signal": "queue"}) is None
