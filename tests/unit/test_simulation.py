"""The simulation's parts: the fast clock, the trace-driven surroundings, the policy copy, the placement
in time; and the status page's pure parts: the history ring and the SVG chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import numpy as np
import pytest
import yaml

from empire.agent.backtest.trace import DemandTrace
from empire.agent.clock import FakeClock, ScaledClock
from empire.agent.history import StatusHistory, point_of
from empire.agent.simulation.run import place, simulated_policy, simulation_dir, summary_line
from empire.agent.simulation.surroundings import UTILIZATION, SimulatedSurroundings
from empire.agent.statuspage.render import chart, fragment
from empire.agent.types import Decision, Reason, SampleStatus, ScaleTo
from empire.config.settings import Settings
from empire.errors import ConfigError
from empire.policies.loading import default_policy_path, load_policy_text

START = datetime(2026, 1, 5, tzinfo=UTC)

POLICY = """
targets:
  - name: web
    workload: {name: web, namespace: demo}
    min_replicas: 1
    max_replicas: 10
    signals:
      - {name: queue, query: q, type: total, target: 50}
      - {name: cpu, query: c, type: average, target: 0.7}
"""


def target():
    return load_policy_text(POLICY).policy.targets[0]


def trace(values: list[float]) -> DemandTrace:
    v = np.asarray(values, dtype=float)
    return DemandTrace("test", START, v, np.isfinite(v))


def test_the_scaled_clock_runs_speed_times_faster_than_the_wall():
    wall = [100.0]
    clock = ScaledClock(START, 60, monotonic=lambda: wall[0])
    assert clock.now() == START
    wall[0] += 1.5
    assert clock.now() == START + timedelta(seconds=90)
    with pytest.raises(ValueError):
        ScaledClock(START, 0)


def test_signals_follow_the_trace_and_average_ones_answer_to_ready_replicas():
    clock = FakeClock(START)
    world = SimulatedSurroundings(trace([100.0] * 60), clock, offset=timedelta(0), startup_delay=timedelta(minutes=2))
    t = target()
    cap = world.model(t).capacity
    assert cap == pytest.approx(100.0 / (0.8 * 10 * UTILIZATION))  # the peak asks 80 % of max_replicas

    async def go():
        before = {s.signal: s.value for s in await world.observe(t, clock.now())}
        replicas = world.cluster(t).replicas
        out = await world.execute(
            ScaleTo(
                target="web",
                namespace="demo",
                workload_kind="Deployment",
                workload_name="web",
                replicas=replicas * 2,
                reasons=(Reason.above_target,),
                current=replicas,
            )
        )
        assert out.status.value == "applied"
        clock.advance(60)  # not ready yet: the same utilization
        mid = {s.signal: s.value for s in await world.observe(t, clock.now())}
        clock.advance(60)
        after = {s.signal: s.value for s in await world.observe(t, clock.now())}
        return before, mid, after

    before, mid, after = anyio.run(go)
    need = 100.0 / cap
    assert before["queue"] == pytest.approx(need / UTILIZATION * 50)  # total: the agent cannot change it
    assert after["queue"] == before["queue"]
    assert mid["cpu"] == pytest.approx(before["cpu"])
    assert after["cpu"] == pytest.approx(before["cpu"] / 2)  # twice the ready replicas, half the utilization
    assert world.books["web"].minutes == 3


def test_a_gap_in_the_trace_is_a_failed_scrape_and_history_serves_what_was_read():
    clock = FakeClock(START + timedelta(minutes=2))
    world = SimulatedSurroundings(trace([10.0, 20.0, float("nan"), 40.0]), clock, offset=timedelta(0),
                                  startup_delay=timedelta(minutes=2))  # fmt: skip
    t = target()
    world.set_targets((t,))
    samples = anyio.run(world.observe, t, clock.now())
    assert {s.status for s in samples} == {SampleStatus.missing}
    hist = anyio.run(world.history, "web/queue", START, START + timedelta(minutes=10), 60.0)
    assert [at for at, _ in hist] == [START, START + timedelta(minutes=1)]  # up to now, the gap skipped
    assert anyio.run(world.history, "sum(rate(x[5m]))", START, clock.now(), 60.0) == []


def test_the_simulated_time_keeps_the_weekday_and_starts_at_or_before_now():
    tr = trace([1.0] * 3 * 1440)
    now = datetime(2026, 12, 5, 4, 30, tzinfo=UTC)
    offset, start = place(tr, timedelta(days=1), now)
    assert offset % timedelta(days=7) == timedelta(0)
    assert start <= now < start + timedelta(days=7)
    assert start.weekday() == (START + timedelta(days=1)).weekday()


def test_the_policy_copy_sends_alerts_to_the_dashboard_unless_notify(tmp_path: Path):
    muted = simulated_policy(default_policy_path(), tmp_path / "p.yaml", notify=False)
    assert muted == ["slack-oncall", "ops-email"]
    body = yaml.safe_load((tmp_path / "p.yaml").read_text())
    assert all(set(r) == {"name", "dashboard"} for r in body["alerting"]["receivers"])
    load_policy_text((tmp_path / "p.yaml").read_text())  # still a valid policy
    assert simulated_policy(default_policy_path(), tmp_path / "q.yaml", notify=True) == []


def test_the_simulation_directory_is_only_emptied_when_a_simulation_made_it(tmp_path: Path):
    settings = Settings(data_dir=tmp_path)
    d = simulation_dir(settings)
    (d / "empire.db").write_text("old")
    assert not (simulation_dir(settings) / "empire.db").exists()
    (d / ".empire-simulation").write_text("pid 1\n")  # a running simulation (pid 1 is always alive)
    with pytest.raises(ConfigError, match="pid 1"):
        simulation_dir(settings)
    other = Settings(data_dir=tmp_path / "x")
    (tmp_path / "x" / "simulation").mkdir(parents=True)
    (tmp_path / "x" / "simulation" / "mine").write_text("keep")
    with pytest.raises(ConfigError, match="not made by a simulation"):
        simulation_dir(other)
    assert (tmp_path / "x" / "simulation" / "mine").exists()


def decision(at: datetime, queue: float, ready: int, forecast: dict | None = None) -> Decision:
    details = {"signals": {"queue": {"value": queue}, "cpu": {"value": 0.5}}, "ready": ready}
    if forecast:
        details["forecast"] = forecast
    return Decision(target="web", at=at, current=ready, recommended=ready, desired=ready, reasons=(Reason.no_change,),
                    details=details)  # fmt: skip


def test_the_history_ring_is_bounded_and_reads_the_demand_signal():
    t = target()
    h = StatusHistory(lambda: (t,), window=timedelta(minutes=30), max_points=100)
    for i in range(200):
        h.on_tick([decision(START + timedelta(minutes=i), 100.0 + i, 3)])
    pts = h.points("web")
    assert len(pts) == 31  # the window, not the count, bounds it here
    assert pts[-1].demand == 299.0 and pts[-1].capacity == 150.0  # 3 ready x 50
    f = {"signal": "queue", "value": 400.0, "horizon_seconds": 120,
         "horizon": {"at": (START + timedelta(hours=1)).isoformat(), "quantiles": {"p10": 300.0, "p90": 500.0}}}  # fmt: skip
    p = point_of(t, decision(START, 100.0, 2, f))
    assert (p.forecast, p.forecast_at, p.low, p.high) == (400.0, START + timedelta(minutes=2), 300.0, 500.0)


def test_the_chart_draws_every_point_and_the_page_escapes_what_it_shows():
    t = target()
    h = StatusHistory(lambda: (t,))
    for i in range(20):
        h.on_tick([decision(START + timedelta(minutes=i), 100.0 + i, 3)])
    svg = chart([p.as_dict() for p in h.points("web")])
    assert 'data-points="20"' in svg and svg.count('class="demand"') == 1
    assert 'data-points="0"' in chart([])
    data = {"now": START.isoformat(), "status": {"targets": {"web": {"reasons": ["<b>x</b>"]}}},
            "targets": {"web": {"history": [], "decisions": [{"explain": "reasons: <script>"}]}},
            "alerts": [], "silences": [], "pools": {"error": "down"}, "tiers": [], "personas": []}  # fmt: skip
    html = fragment(data)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;x&lt;/b&gt;" in html
    assert "unavailable: down" in html


def test_the_summary_line_names_targets_alerts_tracks_and_spend():
    now = START + timedelta(hours=5)
    data = {"now": now.isoformat(), "status": {"targets": {"web": {"current": 4}}},
            "targets": {"web": {"history": [{"ready": 3}]}},
            "alerts": [{"rule": "queue-anomaly", "state": "resolved", "since": (now - timedelta(minutes=5)).isoformat()}],
            "tiers": [{"objects": 2}, {"objects": 1}], "pools": {"spend_today": 1.5, "queued": 7}}  # fmt: skip
    line = summary_line(data, 120.0, {"web": 2})
    assert line == ("2026-01-05 05:00  demand 120/min | web 4/3 ready (2 short min) | alerts firing 0, fired this "
                    "hour: queue-anomaly | 3 tracks stored | spend today $1.50, queue 7")  # fmt: skip
