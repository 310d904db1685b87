"""Spend where it pays: fixed cadence vs the allocator vs an oracle, at equal spend. One JSON line.

The market (`empire.agent.pools.market`): 120 personas (1-3 genres each, on 2-4 of 4 platforms,
generated on one of 3 providers costing 0.8-1.3 per track) whose revenue per track is hidden,
log-normal across personas and genres, noisy per track (a few hits, many duds), paid out over 4-10
weeks and reported 1-5 days late, drifting (a log random walk) with transient trends (x1.5-3 for
1-3 weeks, visible at once in a trend signal). 26 weeks of daily planning; every strategy gets the
same daily budget: what the fixed cadence costs (one track per persona per day).

Strategies, each against the same market (same draws for the same track):
- fixed:     today's planner, `plan_generation`: one track per persona per day, trend boost up to x2,
             the budget guard holding back what does not fit;
- allocator: the planner's `returns` strategy (`plan_by_returns`, default `spending` parameters): a
             floor of one track per persona per week, the rest by Thompson sampling on decayed
             revenue per dollar, up to 3 tracks per persona per day (times the trend boost);
- oracle:    knows every persona's and genre's true current rate; fills the budget with the best
             revenue per dollar, within the same caps per persona and day (no floor).

Revenue is each track's lifetime revenue (what the spend of the 26 weeks earns, including what
arrives after the horizon); `revenue_vs_fixed` and `revenue_vs_oracle` are ratios of it at equal
spend (`spend_vs_fixed` shows how equal). `budget_exceeded` counts strategy-days whose spend passed
the day's budget. Several seeds (independent markets); the mean and the worst seed are reported.

    .venv/bin/python benchmarks/business.py [--seeds 5] [--personas 120] [--weeks 26]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from empire.agent.pools.allocating import TrackReturn  # noqa: E402
from empire.agent.pools.budget import BudgetLedger, BudgetLimits  # noqa: E402
from empire.agent.pools.jobs import Spend  # noqa: E402
from empire.agent.pools.market import Market, Track, generate_market  # noqa: E402
from empire.agent.pools.planner import plan_generation  # noqa: E402
from empire.agent.pools.spending import plan_by_returns  # noqa: E402
from empire.agent.types import Generate  # noqa: E402
from empire.policies.generation import Budget, Cadence, Persona, SpendFloor, SpendPolicy  # noqa: E402

EPOCH = datetime(2026, 1, 5, tzinfo=UTC)
MAX_FACTOR = 3.0  # spending.max_factor: a persona gets at most cadence x 3 (x its trend boost) a day
BOOST_MAX = 2.0  # trend_boost_max
FLOOR_EVERY = 7  # days: one floor track per persona per week

Plan = list[tuple[str, str, int]]  # (persona, genre, count)
Strategy = Callable[[Market, int, list[Track], BudgetLimits], Plan]


def limits_for(market: Market, daily: float) -> BudgetLimits:
    return BudgetLimits(total=Budget(daily=daily), cost_estimate={p.provider: p.cost for p in market.personas})


def personas_of(market: Market) -> tuple[Persona, ...]:
    return tuple(
        Persona(name=p.name, genres=p.genres, cadence=Cadence(tracks=1, every=timedelta(days=1)),
                providers=(p.provider,), trend_boost_max=BOOST_MAX)
        for p in market.personas
    )  # fmt: skip


def executed(actions: tuple[Generate, ...]) -> Plan:
    """The executor's genre per job: genres[n % len(genres)], n numbered from the action's `first`."""
    return [(a.persona, a.genres[n % len(a.genres)], 1) for a in actions for n in range(a.first, a.first + a.count)]


def fixed(market: Market, day: int, tracks: list[Track], limits: BudgetLimits) -> Plan:
    trend = {p.name: market.trend(p.name, day) for p in market.personas}
    plan = plan_generation(personas_of(market), EPOCH + timedelta(days=day), {}, limits, Spend(), trend=trend)
    return executed(plan.actions)


def allocator(
    market: Market,
    day: int,
    tracks: list[Track],
    limits: BudgetLimits,
    floor_every: int = FLOOR_EVERY,
    memory_days: float = 28.0,
    **overrides: object,
) -> Plan:
    """The planner's `returns` strategy as the daemon runs it (`plan_by_returns`), on what the
    platforms have reported by `day`."""
    overrides.setdefault("floor", SpendFloor(tracks=1, every=timedelta(days=floor_every)))
    spending = SpendPolicy(strategy="returns", memory_half_life=timedelta(days=memory_days), **overrides)  # type: ignore[arg-type]
    seen = [TrackReturn(t.persona, t.genre, t.cost, day - t.day, market.revenue(t, day)) for t in tracks]
    recent: dict[str, int] = defaultdict(int)
    for t in tracks:
        if t.day > day - floor_every:
            recent[t.persona] += 1
    trend = {p.name: market.trend(p.name, day) for p in market.personas}
    plan, _ = plan_by_returns(personas_of(market), EPOCH + timedelta(days=day), {}, limits, Spend(), seen, recent,
                              spending, trend=trend)  # fmt: skip
    return executed(plan.actions)


def cap_of(market: Market, persona: str, day: int) -> int:
    """The allocator's cap per persona and day (`plan_by_returns`): cadence x max_factor x trend boost."""
    return math.ceil(MAX_FACTOR * min(BOOST_MAX, max(1.0, market.trend(persona, day))) - 1e-9)


def oracle(market: Market, day: int, tracks: list[Track], limits: BudgetLimits) -> Plan:
    arms = sorted(
        ((market.rate(p.name, g, day) / p.cost, p.name, g, p) for p in market.personas for g in p.genres),
        key=lambda x: (-x[0], x[1], x[2]),
    )
    ledger, taken, out = BudgetLedger(limits, Spend()), defaultdict(int), []
    for _rate, name, genre, p in arms:
        n, cap = 0, cap_of(market, name, day)
        while taken[name] < cap and ledger.reserve(p.provider, p.cost):
            taken[name] += 1
            n += 1
        if n:
            out.append((name, genre, n))
    return out


def run(market: Market, strategy: Strategy, days: int, daily: float) -> dict[str, float]:
    limits = limits_for(market, daily)
    tracks: list[Track] = []
    exceeded, spend = 0, 0.0
    for day in range(days):
        plan = strategy(market, day, tracks, limits)
        cost, made = 0.0, defaultdict(int)
        for persona, genre, count in plan:
            for _ in range(count):
                t = market.publish(persona, genre, day, made[persona])
                made[persona] += 1
                tracks.append(t)
                cost += t.cost
        spend += cost
        exceeded += cost > daily + 1e-9
    return {
        "revenue": sum(t.lifetime for t in tracks),
        "reported_by_horizon": sum(market.revenue(t, days) for t in tracks),
        "spend": spend,
        "tracks": len(tracks),
        "budget_exceeded": exceeded,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--personas", type=int, default=120)
    ap.add_argument("--weeks", type=int, default=26)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--floor-every", type=int, default=FLOOR_EVERY, help="days per floor track")
    ap.add_argument("--memory-days", type=float, default=28.0, help="spending.memory_half_life in days")
    args = ap.parse_args()
    days = args.weeks * 7
    started = time.process_time()
    per_seed = []
    exceeded = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        market = generate_market(seed, args.personas, days)
        daily = sum(p.cost for p in market.personas)
        mine = partial(allocator, floor_every=args.floor_every, memory_days=args.memory_days)
        res = {name: run(market, s, days, daily) for name, s in (
            ("fixed", fixed), ("allocator", mine), ("oracle", oracle),
            ("before", partial(mine, draw="thompson", floor=SpendFloor(tracks=1, every=timedelta(days=args.floor_every),
                                                                      skip_hopeless=False))),
        )}  # fmt: skip
        exceeded += sum(int(r["budget_exceeded"]) for r in res.values())
        per_seed.append({
            "seed": seed,
            "revenue_vs_fixed": round(res["allocator"]["revenue"] / res["fixed"]["revenue"], 3),
            "revenue_vs_oracle": round(res["allocator"]["revenue"] / res["oracle"]["revenue"], 3),
            "before_vs_fixed": round(res["before"]["revenue"] / res["fixed"]["revenue"], 3),
            "before_vs_oracle": round(res["before"]["revenue"] / res["oracle"]["revenue"], 3),
            "oracle_vs_fixed": round(res["oracle"]["revenue"] / res["fixed"]["revenue"], 3),
            "spend_vs_fixed": round(res["allocator"]["spend"] / res["fixed"]["spend"], 4),
            "oracle_spend_vs_fixed": round(res["oracle"]["spend"] / res["fixed"]["spend"], 4),
            "roi": {k: round(r["revenue"] / r["spend"], 3) for k, r in res.items()},
        })  # fmt: skip
    vs_fixed = [s["revenue_vs_fixed"] for s in per_seed]
    vs_oracle = [s["revenue_vs_oracle"] for s in per_seed]
    before_fixed = [s["before_vs_fixed"] for s in per_seed]
    before_oracle = [s["before_vs_oracle"] for s in per_seed]
    print(json.dumps({
        "benchmark": "business",
        "personas": args.personas,
        "platforms": 4,
        "weeks": args.weeks,
        "seeds": args.seeds,
        "revenue_vs_fixed": round(statistics.mean(vs_fixed), 3),
        "revenue_vs_fixed_worst": min(vs_fixed),
        "revenue_vs_oracle": round(statistics.mean(vs_oracle), 3),
        "revenue_vs_oracle_worst": min(vs_oracle),
        "budget_exceeded": exceeded,
        "before": {  # the same run, the allocator as it was: draws from today's posterior, a floor for every persona
            "revenue_vs_fixed": round(statistics.mean(before_fixed), 3), "revenue_vs_fixed_worst": min(before_fixed),
            "revenue_vs_oracle": round(statistics.mean(before_oracle), 3),
            "revenue_vs_oracle_worst": min(before_oracle),
        },
        "per_seed": per_seed,
        "cpu_s": round(time.process_time() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
