"""The anomaly detectors are fitted on the metric source's last day at the alert job's first run, so
a started daemon does not spend the 300-point learning period blind; a source that fails is logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import anyio

from empire.agent.alerting.job import WARM_WINDOW, AlertRulesJob
from empire.agent.alerting.memory import MemoryAlertStore
from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.policies.loading import default_policy_path, load_policy
from empire.state.memory import MemoryStateStore

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def job(history):
    policy = load_policy(default_policy_path()).policy
    runner = ActionRunner(MemoryStateStore(), {}, FakeClock(NOW), Monitor())
    loop = SimpleNamespace(status={}, histories={}, forecaster=None)
    return AlertRulesJob(lambda: policy, loop, runner, MemoryAlertStore(), history=history)


def test_the_detector_is_warmed_on_a_day_of_history_at_the_first_run():
    asked = []

    async def history(target, signal, start, end, step):
        asked.append((target, signal, end - start, step))
        n = int((end - start).total_seconds() // step)
        return [(start + timedelta(seconds=i * step), 100.0 + i % 7) for i in range(n)]

    j = job(history)
    anyio.run(j, NOW)
    anyio.run(j, NOW + timedelta(seconds=15))  # warmed once, not at every run
    assert asked == [("generator", "queue", WARM_WINDOW, 60.0)]
    detector = j.scorer._detectors[("generator", "queue")]
    assert detector.n_seen_ == 1440  # past the learning period: the next points are scored


def test_a_source_without_history_leaves_the_detector_to_learn(caplog):
    async def history(*_):
        raise RuntimeError("no metric source configured")

    j = job(history)
    with caplog.at_level(logging.WARNING):
        anyio.run(j, NOW)
    assert "no history to warm the anomaly detector of generator/queue" in caplog.text
    detector = j.scorer._detectors.get(("generator", "queue"))
    assert getattr(detector, "n_seen_", 0) == 0  # nothing observed yet: it learns from the next points
