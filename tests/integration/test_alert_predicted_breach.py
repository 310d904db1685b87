"""Predicted breach alerts from the horizon forecast, in the daemon on a fake clock.

`build_daemon` with a fake Prometheus over real HTTP (instant queries for the loop, `query_range` for
history) and a real state DB. The queue follows a daily cycle with noise; four days of it are
already in Prometheus. Two targets: `gen` scales `forecast_only`, `api` does not scale predictively
at all, and each has a predicted_breach rule (threshold 900, within 60 minutes). As the morning
rise comes, both alerts fire while the queue is still well below 900, before it crosses; the model
registry holds each horizon model with its holdout error and its fallback's; forecast_only
decisions record the horizon forecast; the metrics and `/status` show the path; and a restarted
daemon restores the models from the registry instead of refitting.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from empire.agent.clock import FakeClock
from empire.agent.daemon import Daemon, build_daemon
from empire.config.settings import load_settings
from empire.state.alerts import SqlAlertStore
from fakes.prometheus import FakePrometheus

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

RISE = datetime(2026, 6, 1, 5, 0, tzinfo=UTC)  # the queue's daily low-to-high zero crossing
START = RISE + timedelta(hours=1)
THRESHOLD = 900.0
NOISE = np.random.default_rng(7).normal(0.0, 15.0, 20_000)


def queue(t: float) -> float:
    """600 +- 400 over the day, peaking at 11:00, plus per-minute noise (the same on every query)."""
    phase = 2 * math.pi * (t - RISE.timestamp()) / 86400
    return 600.0 + 400.0 * math.sin(phase) + float(NOISE[int(t // 60) % len(NOISE)])


def crossing() -> datetime:
    """When the noiseless cycle first reaches the threshold after the rise."""
    return RISE + timedelta(seconds=86400 * math.asin((THRESHOLD - 600) / 400) / (2 * math.pi))


def target(name: str, mode: str) -> dict[str, Any]:
    return {"name": name, "workload": {"name": name, "namespace": "music"}, "min_replicas": 1, "max_replicas": 40,
            "signals": [{"name": "queue", "query": f"sum(queue_{name})", "type": "total", "target": 50}],
            "predictive": {"mode": mode, "signal": "queue", "horizon": "1h", "quantile": 0.9,
                           "scheduling_buffer": "2m", "history": "4d", "refit_every": "6h"}}  # fmt: skip


def rule(name: str) -> dict[str, Any]:
    return {"name": f"{name}-breach", "kind": "predicted_breach", "target": name, "signal": "queue",
            "threshold": THRESHOLD, "horizon": "60m", "severity": "warning",
            "summary": "{signal} of {target} forecast above {threshold}"}  # fmt: skip


POLICY = {
    "loop": {"interval": "60s"},
    "targets": [target("gen", "forecast_only"), target("api", "off")],
    "alerting": {"receivers": [{"name": "dashboard", "dashboard": {}}], "route": {"receiver": "dashboard"},
                 "rules": [rule("gen"), rule("api")]},
}  # fmt: skip


@pytest.fixture
def prometheus() -> Any:
    prom = FakePrometheus()
    prom.series["sum(queue_gen)"] = queue
    prom.series["sum(queue_api)"] = queue
    with prom.serve() as url:
        prom.url = url
        yield prom


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str, prometheus: Any) -> Any:
    for var in ("EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE",
                "EMPIRE_POLICY_SOURCE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    return policy, load_settings(data_dir=tmp_path / "data", database_url=database_url,
                                 kubernetes={"mode": "disabled"}, prometheus={"url": prometheus.url},
                                 http={"port": 0}, replica_id="r1")  # fmt: skip


@asynccontextmanager
async def running(settings: Any, clock: FakeClock) -> AsyncIterator[Daemon]:
    policy, config = settings
    d = await build_daemon(config, policy, clock=clock)
    try:
        await d.loop.start()
        yield d
    finally:
        await d.leader.release()
        for close in reversed(d.closers):
            await close()


async def step(d: Daemon) -> None:
    """One tick and the periodic jobs, as `empire run` would run them at this instant."""
    await d.loop.tick()
    await d.jobs.run_due(d.clock.now())


def sample(d: Daemon, name: str, labels: dict[str, str]) -> float | None:
    return d.monitor.registry.get_sample_value(name, labels)


async def test_predicted_breach_fires_before_the_threshold_is_crossed(settings: Any) -> None:
    clock = FakeClock(START)
    fired: dict[str, tuple[datetime, float, dict[str, str]]] = {}
    async with running(settings, clock) as d:
        alerts = SqlAlertStore(d.db)
        while clock.now() < crossing() + timedelta(minutes=10) and len(fired) < 2:
            await step(d)
            for a in await alerts.list_alerts("firing"):
                fired.setdefault(a.labels["target"], (clock.now(), queue(clock.now().timestamp()), a.annotations))
            clock.advance(300)
        assert set(fired) == {"gen", "api"}  # api's scaling is not predictive: its rule gets a forecast anyway
        for name, (at, value, annotations) in fired.items():
            assert at > START  # not at once: the first forecasts stayed below the threshold
            assert at <= crossing() - timedelta(minutes=20), (name, at, crossing())
            assert value < THRESHOLD - 100  # the queue itself was well below the threshold then
            assert annotations["forecast_quantile"] == "p90" and annotations["breach_in"].endswith("m")
            assert annotations["forecast_model"] in ("gbm", "seasonal_change", "interpolated")

        stored: dict[str, float] = {}
        for name in ("gen", "api"):
            rec = await d.store.latest_model(f"horizon:{name}/queue")
            assert rec is not None and rec.in_use and rec.blob
            assert rec.kind in ("gbm", "fallback") and rec.metrics["used"] == (rec.kind == "gbm")
            assert rec.params["step_seconds"] == 300 and rec.params["lead_seconds"] == [3600]
            mae, fallback = rec.metrics["validation_mae"], rec.metrics["fallback_validation_mae"]
            assert 0 < mae < 100 and 0 < fallback < 100  # requests, on a queue of 200..1000
            assert rec.metrics["horizons"]["1h"]["validation_mae"] == mae
            stored[name] = mae
            assert sample(d, "empire_forecast_horizon_validation_mae",
                          {"target": name, "signal": "queue", "horizon": "1h", "model": "gbm"}) == mae  # fmt: skip
            p90 = sample(d, "empire_forecast_horizon_demand",
                         {"target": name, "signal": "queue", "forecast_quantile": "p90", "horizon": "1h"})  # fmt: skip
            assert p90 is not None and p90 > THRESHOLD

        # forecast_only records both forecasts and acts on neither
        [decision] = await d.store.recent_decisions("gen", limit=1)
        assert "predicted_demand" not in decision.reasons
        horizon = decision.details["forecast"]["horizon"]
        assert horizon["horizon"] == "1h" and horizon["method"] in ("gbm", "seasonal_change")
        assert set(horizon["quantiles"]) == {"p10", "p50", "p90"}
        assert horizon["would_scale_to"] == math.ceil(horizon["quantiles"]["p90"] / 50)
        assert "horizon" not in ((await d.store.recent_decisions("api", limit=1))[0].details.get("forecast") or {})

        status = d.context.status_sections["forecast_horizon"]()
        gen = status["gen/queue"]
        assert gen["step"] == "5m" and gen["asked"] == {"predictive": "1h", "rule:gen-breach": "1h"}
        assert status["api/queue"]["asked"] == {"rule:api-breach": "1h"}
        points = gen["path"]["points"]
        assert points[0]["method"] == "observed" and points[-1]["in"] == "1h" and len(points) == 13
        assert {p["method"] for p in points[1:-1]} == {"interpolated"}
        result = "model" if gen["horizons"]["1h"]["method"] == "gbm" else "fallback"
        refits = sample(
            d, "empire_forecast_horizon_refits_total", {"target": "gen", "signal": "queue", "result": result}
        )
        assert refits == 1  # fitted once: 2.5 simulated hours are well inside refit_every

    clock.advance(600)  # a restart: the models come back from the registry, no refit
    async with running(settings, clock) as again:
        await step(again)
        st = again.context.status_sections["forecast_horizon"]()["gen/queue"]
        assert st["reason"].startswith("restored from the model registry") and st["path"] is not None
        assert st["horizons"]["1h"]["validation_mae"] == stored["gen"]
        for result in ("model", "fallback", "short_history", "error"):
            assert sample(again, "empire_forecast_horizon_refits_total",
                          {"target": "gen", "signal": "queue", "result": result}) is None  # fmt: skip
