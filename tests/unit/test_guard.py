"""The predictive guard (`empire.agent.guard`): the forecast acts only where it beat reactive scaling on
this workload's own demand, loses the right to act at once when it starts missing, and its skill
measures are causal."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from empire.agent.deciding import decide
from empire.agent.guard import GateState, GuardSettings, PredictiveGuard, trip_count, variant_grid
from empire.agent.stabilizing import TargetHistory
from empire.agent.types import Forecast, ForecastGate, Observation, Reason, Sample
from empire.policies.scaling import Target

START = datetime(2026, 3, 2, tzinfo=UTC)
HOUR = 60  # ticks of one minute


def settings(**kw) -> GuardSettings:
    base = {"step": 60.0, "target": 7.0, "capacity": 10.0, "tolerance": 0.1, "policy_window": 300.0,
            "buffer": 120.0, "quantile": 0.975, "min_evaluation": 6 * 3600.0, "evaluation_window": 86400.0}  # fmt: skip
    base.update(kw)
    return GuardSettings(**base)


def ramps(hours: int) -> np.ndarray:
    """Demand that jumps from 35 to 140 for 10 minutes every half hour: reactive is short for the first
    minutes of every jump (new replicas take 2 minutes), a forecast that knows the jumps is never short."""
    minute = np.arange(hours * HOUR)
    return np.where(minute % 30 >= 20, 140.0, 35.0)


def feed(guard: PredictiveGuard, demand: np.ndarray, forecast, start: int = 0) -> list[str]:
    """Observe `demand` minute by minute; `forecast(i)` is what the model predicts at minute i for i + 2."""
    states = []
    for i in range(start, len(demand)):
        at = START + timedelta(minutes=i)
        f = forecast(i)
        guard.observe(at, float(demand[i]), None if f is None else dict.fromkeys(guard.quantiles, f), f)
        states.append(guard.verdict().state)
    return states


def test_a_variant_grid_centres_on_the_policy():
    grid = variant_grid(0.975, buffer=120, policy_window=300)
    assert sorted({v.quantile for v in grid}) == [0.9, 0.95, 0.975, 0.99]
    assert sorted({v.window for v in grid}) == [60, 120, 180, 300]
    assert max(v.window for v in variant_grid(0.9, buffer=600, policy_window=300)) == 300  # never longer


def test_trip_count_is_a_binomial_tail():
    assert trip_count(60, 0.025) == 7  # P(X >= 7 | n=60, p=0.025) < 1e-3 <= P(X >= 6)
    assert 40 < trip_count(60, 0.5) < 50  # 30 expected


def test_unproven_until_enough_evidence_then_trusted_when_it_beats_reactive():
    demand = ramps(12)
    guard = PredictiveGuard(settings(), replicas=5)
    states = feed(guard, demand, lambda i: float(demand[min(i + 2, len(demand) - 1)]))  # a perfect forecast
    assert set(states[: 6 * HOUR - 1]) == {GateState.unproven}  # min_evaluation: 6 h
    verdict = guard.verdict()
    assert verdict.state == GateState.trusted and verdict.variant is not None
    under, ticks, _ = guard.totals(verdict.variant)
    r_under, r_ticks, _ = guard.totals(None)
    assert ticks == r_ticks == len(demand) and under < r_under


def test_a_forecast_suddenly_wrong_loses_the_gate_within_minutes():
    """Good for 12 hours, then it misses every jump: the gate closes after the binomial test's count of
    misses (7 of the last 60 at the 97.5 % quantile), long before the books (a day) could notice."""
    demand = ramps(14)
    guard = PredictiveGuard(settings(), replicas=5)
    good = 12 * HOUR
    feed(guard, demand[:good], lambda i: float(demand[i + 2]))
    assert guard.verdict().state == GateState.trusted
    states = feed(guard, demand, lambda i: 0.0, start=good)  # now it predicts nothing at all
    lost = states.index(GateState.skill_lost)
    misses_needed = trip_count(60, 1 - guard.evidence()["variant"]["quantile"])
    assert lost <= misses_needed + 2  # a miss per minute, scored 2 minutes after the forecast
    assert set(states[lost:]) == {GateState.skill_lost}


def test_where_reactive_is_never_short_the_forecast_never_acts():
    """Smooth demand: reactive at 70 % is never under-provisioned, so nothing can be won and the guard
    never lets a forecast shorten the scale-down window or add replicas."""
    minute = np.arange(36 * HOUR)
    demand = 200 + 100 * np.sin(2 * np.pi * minute / (24 * HOUR))
    guard = PredictiveGuard(settings(), replicas=40)
    states = feed(guard, demand, lambda i: float(demand[min(i + 2, len(demand) - 1)]) * 0.9)
    assert guard.totals(None)[0] == 0
    assert set(states) == {GateState.unproven}


def test_the_skill_measure_is_causal():
    """A forecast is scored only once its target minute is observed, and what is measured up to minute t
    does not depend on anything after t."""
    rng = np.random.default_rng(1)
    demand = rng.poisson(40, 400).astype(float)
    future = demand.copy()
    future[300:] *= 4
    a, b = PredictiveGuard(settings(), 5), PredictiveGuard(settings(), 5)
    feed(a, demand[:300], lambda i: 45.0)
    feed(b, future, lambda i: 45.0 if i < 300 else 500.0)
    c = PredictiveGuard(settings(), 5)
    feed(c, demand[:300], lambda i: 45.0)
    assert a.exceedance(0.975) == c.exceedance(0.975) and a.skill() == c.skill()
    # a forecast made at minute 0 for minute 2 is not scored at minute 1
    d = PredictiveGuard(settings(), 5)
    feed(d, np.array([40.0, 500.0]), lambda i: 45.0)
    assert d.exceedance(0.975) == (0, 0)
    feed(d, np.array([40.0, 500.0, 500.0]), lambda i: 45.0, start=2)
    assert d.exceedance(0.975) == (1, 1)


def test_skill_against_seasonal_naive():
    guard = PredictiveGuard(settings(), 5)
    demand = np.full(200, 50.0)
    for i, v in enumerate(demand):
        guard.observe(START + timedelta(minutes=i), v, dict.fromkeys(guard.quantiles, 51.0), 80.0)
    assert guard.skill() == pytest.approx(1 - 1 / 30)  # off by 1 vs off by 30, same side: pinball ratio
    worse = PredictiveGuard(settings(), 5)
    for i, v in enumerate(demand):
        worse.observe(START + timedelta(minutes=i), v, dict.fromkeys(worse.quantiles, 90.0), 55.0)
    assert worse.skill() < 0


def test_books_survive_a_restart_and_a_policy_change_starts_afresh():
    demand = ramps(12)
    guard = PredictiveGuard(settings(), replicas=5)
    feed(guard, demand, lambda i: float(demand[min(i + 2, len(demand) - 1)]))
    saved = guard.state()
    end = START + timedelta(minutes=len(demand))
    again = PredictiveGuard(settings(), replicas=5)
    again.restore(saved, end)
    assert again.totals(None) == guard.totals(None) and again.verdict().state == GateState.trusted
    changed = PredictiveGuard(settings(quantile=0.9), replicas=5)  # other variants: not comparable
    changed.restore(saved, end)
    assert changed.totals(None)[1] == 0 and changed.verdict().state == GateState.unproven
    later = PredictiveGuard(settings(), replicas=5)
    later.restore(saved, end + timedelta(days=2))  # all of it older than the evaluation window
    assert later.totals(None)[1] == 0


def _target() -> Target:
    return Target.model_validate({
        "name": "web", "workload": {"name": "web"}, "min_replicas": 1, "max_replicas": 100,
        "signals": [{"name": "demand", "query": "d", "type": "total", "target": 7}],
        "predictive": {"mode": "forecast_and_scale", "target": 10, "quantile": 0.975},
    })  # fmt: skip


def _obs(demand: float, current: int, at: datetime) -> Observation:
    return Observation("web", at, (Sample("demand", demand, at, 0.0),), current)


def test_decide_acts_on_a_trusted_forecast_only():
    t, now = _target(), START
    for gate, reason in ((ForecastGate.unproven, Reason.forecast_unproven),
                         (ForecastGate.skill_lost, Reason.forecast_skill_lost)):  # fmt: skip
        d = decide(t, _obs(35, 5, now), TargetHistory(), now, Forecast("demand", 300.0, 0.975, 120, gate=gate))
        assert d.decision.desired == 5 and reason in d.decision.reasons  # reactive alone: 35 / 7 = 5
        assert d.decision.details["forecast"]["would_scale_to"] == 30
    trusted = Forecast("demand", 300.0, 0.975, 120, gate=ForecastGate.trusted)
    d = decide(t, _obs(35, 5, now), TargetHistory(), now, trusted)
    assert d.decision.recommended == 30 and Reason.predicted_demand in d.decision.reasons


def test_a_trusted_forecast_never_goes_below_reactive():
    t, now = _target(), START
    low = Forecast("demand", 1.0, 0.975, 120, gate=ForecastGate.trusted, scale_down_window=60)
    d = decide(t, _obs(140, 5, now), TargetHistory(), now, low)
    assert d.decision.desired == 10  # min(20, the scale-up rate limit of max(2 x 5, 5 + 4)) from reactive's 20


def test_the_trusted_window_scales_down_sooner_and_says_so():
    """At 20 replicas after a burst, demand falls to 35: the policy's 5-minute window holds 20; the
    trusted variant's 1-minute window lets it go to 5 on the next tick (early_scale_down)."""
    t, now = _target(), START
    history = decide(t, _obs(140, 20, now), TargetHistory(), now).history
    later = now + timedelta(minutes=1)
    held = decide(t, _obs(35, 20, later), history, later).decision
    assert held.desired == 20
    f = Forecast("demand", 30.0, 0.975, 120, gate=ForecastGate.trusted, scale_down_window=60)
    early = decide(t, _obs(35, 20, later), history, later, f).decision
    assert early.desired == 5 and Reason.early_scale_down in early.reasons
    assert math.isclose(early.details["stabilization"]["scale_down_window"], 60)


def test_explain_says_whether_the_forecast_acted_and_why():
    from types import SimpleNamespace

    from empire.cli.explain import render

    t, now = _target(), START
    f = Forecast("demand", 300.0, 0.975, 120, details={"guard": {"state": "unproven", "why": "evaluating: 2.0 h of 12 h"}},
                 gate=ForecastGate.unproven)  # fmt: skip
    d = decide(t, _obs(35, 5, now), TargetHistory(), now, f).decision
    record = SimpleNamespace(id=1, at=d.at, current=d.current, recommended=d.recommended, desired=d.desired,
                             dry_run=False, policy_version=None, reasons=[r.value for r in d.reasons], details=d.details)  # fmt: skip
    text = "\n".join(render([record], {}))
    assert "forecast_unproven" in text
    assert "guard: unproven: not acted on (reactive scaling decides); evaluating: 2.0 h of 12 h" in text


def test_a_forecast_that_turns_dear_stops_acting_and_the_excess_stays_bounded():
    """Trusted on 12 good hours, then the forecast asks for far too much (never a miss, no skill measure:
    the fast gates cannot see it). The books stop it, and the live books show the excess stays bounded."""
    demand = ramps(20)
    guard = PredictiveGuard(settings(), replicas=5)
    good = 12 * HOUR
    feed(guard, demand[:good], lambda i: float(demand[i + 2]))
    assert guard.verdict().state == GateState.trusted and guard.overspent() <= 0

    states = []
    for i in range(good, len(demand)):
        guard.observe(START + timedelta(minutes=i), float(demand[i]), dict.fromkeys(guard.quantiles, 300.0), None)
        states.append(guard.verdict())
    assert states[0].state == GateState.trusted  # nothing else objects to it at first
    stopped = next(i for i, v in enumerate(states) if v.state != GateState.trusted)
    assert all(v.state == GateState.unproven for v in states[stopped:])
    over = guard.overspent() / 3600
    live, reactive = guard.evidence()["live"]["replica_hours"], guard.evidence()["reactive"]["replica_hours"]
    assert 0 < over < 0.1 * reactive and live > reactive, (over, live, reactive)


def test_when_the_live_books_are_over_the_cheapest_eligible_variant_acts():
    """The target (the live column) used more replica-hours than reactive would have: the guard repays,
    choosing the cheapest variant that still beats reactive, and says so."""
    demand = ramps(12)
    guard = PredictiveGuard(settings(), replicas=5)
    feed(guard, demand, lambda i: float(demand[min(i + 2, len(demand) - 1)]))
    fewest = guard.verdict()
    assert fewest.trusted and "why" not in fewest.details
    cheapest, _ = guard._select(repay=True)
    assert cheapest is not None
    guard.bank.cost[-1] = guard.bank.cost[0] + 3600  # one replica-hour over, as a switching history can leave
    guard.bank.step(guard.last_at + 60, float(demand[-1]), None, None)  # the next tick (books move on)
    repaying = guard.verdict()
    assert repaying.trusted and repaying.details["why"].startswith("repaying")
    assert repaying.variant == guard.variants[cheapest[0]]
    assert guard.totals(repaying.variant)[2] <= guard.totals(fewest.variant)[2]
