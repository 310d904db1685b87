"""Spend where it pays: the period's generation budget across personas and genres. PURE.

A fixed release cadence spends the same on a persona whose tracks earn nothing as on one whose
tracks earn ten times their cost. The allocator learns, from the revenue the platforms report,
what one dollar of generation returns for each persona and genre, and spends the budget on the best
bets, while still buying the data it needs to notice that a bet has changed.

Estimate (per persona, then per genre of it): decayed revenue over decayed *matured* spend.
- Revenue arrives over weeks: a track `a` days old has reported about `1 - 2**(-a/payout_half_life)`
  of what it will earn, so its cost counts only in that proportion (a fresh track neither helps
  nor hurts its persona yet, instead of looking like a loss).
- Audiences drift: a track's weight halves every `memory_half_life` days.
- Few tracks say little: a persona starts from the average of all personas worth `prior_tracks`
  tracks; a genre starts from its persona's estimate worth `genre_prior_tracks` tracks. A persona
  with no data is therefore planned as an average one, with a wide uncertainty.

Thompson sampling turns the estimate into a choice that also explores: each period draws one
plausible return per persona and genre from its posterior (a Gamma around the estimate whose
relative spread is `cv / sqrt(tracks)`: a per-track coefficient of variation over the evidence),
multiplies it by the persona's trend boost, and fills the budget greedily by the drawn return per
dollar, each persona up to its cap. A well-known earner is chosen for its estimate; an uncertain
one is chosen now and then, when its draw is lucky, which is how its estimate improves. With
`rank="pending"` (the policy's default `draw: pending`) the draw comes from the posterior as it
will be when the track's revenue is in: the revenue still to come of the tracks already out
(`ArmStats.pending`, their unmatured share) and the floor's next tracks count in its spread, not
its mean. Revenue arrives weeks late, so exploring a persona whose data is already on the way buys
little; the plain posterior (`"thompson"`) explores more than a floor-fed market needs.

Before that, every active persona owed a *floor* (the caller counts the floor cadence: e.g. one
track per week) gets it, highest priority first, in its least-observed genre: no persona starves
of data, so a fading earner and a rising newcomer are both noticed. With `skip_hopeless_floor`
a persona whose optimistic return (expected + 2 sd) is below that of the last track the period's
money buys (by estimate, within the caps) waits: it could not enter the budget. Its evidence
fades with `memory_half_life`, its uncertainty grows, and its floor resumes by itself.

Budgets are the planner's: a `BudgetLedger` (daily and monthly, global and per provider) is
checked and reserved for every track, so no allocation passes a budget; what does not fit is held
back (`budget_exhausted`) with the count. Each allocation carries its reason: `floor` or
`expected_return`, with the expected return per dollar, its uncertainty, the draw and the boost.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from empire.agent.pools.budget import BudgetLedger

__all__ = [
    "Allocation",
    "AllocationPlan",
    "ArmStats",
    "Demand",
    "Estimate",
    "Held",
    "Learning",
    "TrackReturn",
    "allocate",
    "arm_stats",
    "estimates",
]


@dataclass(frozen=True)
class Learning:
    """How the allocator weighs evidence (see the module docstring)."""

    memory_half_life: float = 28.0  # days: a track's weight halves this often (audiences drift)
    payout_half_life: float = 10.0  # days: assumed time for half of a track's revenue to be reported
    prior_tracks: float = 1.0  # a persona's prior (the all-persona average) is worth this many tracks
    genre_prior_tracks: float = 3.0  # a genre's prior (its persona's estimate) is worth this many tracks
    cv: float = 1.0  # per-track revenue dispersion: standard deviation over mean
    prior_return: float = 1.0  # revenue per dollar assumed before any revenue is reported at all
    rank: str = "pending"  # "pending": drawn from the posterior as it will be when the track's revenue is in;
    # "thompson": from the posterior as it is now (explores more)
    skip_hopeless_floor: bool = True  # no floor for a persona whose optimistic return is below the cutoff
    floor_per_day: float = 0.0  # the floor's tracks per persona and day ("pending" counts those still to come)


@dataclass(frozen=True)
class TrackReturn:
    """What one published track has earned so far."""

    persona: str
    genre: str
    cost: float
    age_days: float
    revenue: float  # cumulative, as last reported (a revised figure replaces the earlier one)
    matured: float | None = None  # share of its lifetime revenue reported by now, if known (else the half-life curve)


@dataclass
class ArmStats:
    """Decayed evidence for one persona and genre."""

    exposure: float = 0.0  # matured dollars: sum of weight * matured share * cost
    revenue: float = 0.0  # sum of weight * revenue
    tracks: float = 0.0  # matured tracks: sum of weight * matured share
    pending: float = 0.0  # revenue still to come, in tracks: sum of weight * (1 - matured share)

    def add(self, other: ArmStats) -> None:
        self.exposure += other.exposure
        self.revenue += other.revenue
        self.tracks += other.tracks
        self.pending += other.pending


def arm_stats(tracks: Iterable[TrackReturn], learning: Learning) -> dict[tuple[str, str], ArmStats]:
    out: dict[tuple[str, str], ArmStats] = {}
    for t in tracks:
        age = max(0.0, t.age_days)
        weight = 0.5 ** (age / learning.memory_half_life)
        matured = t.matured if t.matured is not None else 1.0 - 0.5 ** (age / learning.payout_half_life)
        s = out.setdefault((t.persona, t.genre), ArmStats())
        s.exposure += weight * matured * t.cost
        s.revenue += weight * t.revenue
        s.tracks += weight * matured
        s.pending += weight * (1.0 - matured)
    return out


@dataclass(frozen=True)
class Demand:
    """One persona's standing for this period, as the caller (the planner) sees it."""

    persona: str
    genres: tuple[str, ...]
    provider: str
    cost: float  # estimated cost of one track
    cap: int  # most tracks this period (cadence times the allowed factor)
    floor: int = 0  # tracks the floor cadence still owes this period
    boost: float = 1.0  # trend boost, already capped by the persona's trend_boost_max
    priority: int = 1  # 0 high, 1 normal, 2 low: the order in which floors get the money


@dataclass(frozen=True)
class Estimate:
    expected: float  # revenue per dollar
    uncertainty: float  # its standard deviation
    tracks: float  # matured decayed tracks behind it


@dataclass(frozen=True)
class Allocation:
    persona: str
    genre: str
    count: int
    reason: str  # "floor" | "expected_return"
    expected: float  # revenue per dollar
    uncertainty: float
    draw: float  # the sampled return per dollar (times the boost) it was ranked by; 0 for a floor
    boost: float


@dataclass(frozen=True)
class Held:
    persona: str
    reason: str  # "budget_exhausted"
    count: int


@dataclass(frozen=True)
class AllocationPlan:
    allocations: tuple[Allocation, ...]
    held: tuple[Held, ...]

    def count(self, persona: str) -> int:
        return sum(a.count for a in self.allocations if a.persona == persona)


def _gamma_draw(mean: float, k: float, rng: random.Random) -> float:
    return mean * rng.gammavariate(k, 1.0) / k if mean > 0 else 0.0


def estimates(
    demands: Sequence[Demand], stats: Mapping[tuple[str, str], ArmStats], learning: Learning
) -> dict[tuple[str, str], tuple[Estimate, float, float]]:
    """Per (persona, genre): its estimate, plus (the persona's mean, the persona's Gamma shape) for
    drawing. The all-persona average anchors personas with no data."""
    total = ArmStats()
    for s in stats.values():
        total.add(s)
    mu0 = total.revenue / total.exposure if total.exposure > 0 else learning.prior_return
    cv2 = learning.cv**2
    persona_stats: dict[str, ArmStats] = {}
    for (persona, _genre), s in stats.items():  # every genre counts for its persona, also one no longer listed
        persona_stats.setdefault(persona, ArmStats()).add(s)
    out: dict[tuple[str, str], tuple[Estimate, float, float]] = {}
    for d in demands:
        ps = persona_stats.get(d.persona, ArmStats())
        n0 = learning.prior_tracks * d.cost
        mean_p = (mu0 * n0 + ps.revenue) / (n0 + ps.exposure)
        k_p = (learning.prior_tracks + ps.tracks) / cv2
        for g in d.genres:
            gs = stats.get((d.persona, g), ArmStats())
            ng = learning.genre_prior_tracks * d.cost
            mean_g = (mean_p * ng + gs.revenue) / (ng + gs.exposure)
            share = ng / (ng + gs.exposure)  # how much of the genre's estimate is still its persona's
            rel_var = share**2 / k_p + cv2 / (learning.genre_prior_tracks + gs.tracks)
            out[(d.persona, g)] = (Estimate(mean_g, mean_g * math.sqrt(rel_var), gs.tracks), mean_p, k_p)
    return out


def _cutoff(
    demands: Sequence[Demand], est: Mapping[tuple[str, str], tuple[Estimate, float, float]], spend_limit: float
) -> float:
    """The expected return per dollar of the last track the period's money buys, ranked by estimate."""
    arms = sorted(((est[(d.persona, g)][0].expected * max(d.boost, 1.0), d) for d in demands for g in d.genres),
                  key=lambda x: -x[0])  # fmt: skip
    spent, taken = 0.0, set()
    for value, d in arms:
        if d.persona in taken:
            continue
        taken.add(d.persona)
        spent += d.cap * d.cost
        if spent >= spend_limit:
            return value
    return 0.0


def allocate(
    demands: Sequence[Demand],
    stats: Mapping[tuple[str, str], ArmStats],
    ledger: BudgetLedger,
    rng: random.Random,
    learning: Learning | None = None,
    spend_limit: float = math.inf,
) -> AllocationPlan:
    """Floors first (by priority), then the rest of the budget by Thompson draws, spending at most
    `spend_limit` (the period's target) and what `ledger` allows; `ledger` is reserved in place
    for every allocated track."""
    learning = learning or Learning()
    cv2 = learning.cv**2
    est = estimates(demands, stats, learning)
    taken: dict[str, int] = {}
    counts: dict[tuple[str, str, str], int] = {}
    held: dict[str, int] = {}
    spent = 0.0

    def take(d: Demand, genre: str, reason: str, want: int) -> int:
        nonlocal spent
        got = 0
        while got < want and spent + d.cost <= spend_limit + 1e-9 and ledger.reserve(d.provider, d.cost):
            got += 1
            spent += d.cost
        if got:
            taken[d.persona] = taken.get(d.persona, 0) + got
            counts[(d.persona, genre, reason)] = counts.get((d.persona, genre, reason), 0) + got
        return got

    cutoff = _cutoff(demands, est, spend_limit) if learning.skip_hopeless_floor else 0.0
    for d in sorted(demands, key=lambda d: (d.priority, d.persona)):
        want = min(d.floor, d.cap)
        if want <= 0:
            continue
        _e, mean_p, k_p = est[(d.persona, d.genres[0])]
        if mean_p * (1.0 + 2.0 / math.sqrt(k_p)) * max(d.boost, 1.0) < cutoff:
            continue  # even its optimistic return cannot reach what the budget buys: the floor waits
        genre = min(d.genres, key=lambda g: (est[(d.persona, g)][0].tracks, d.genres.index(g)))
        got = take(d, genre, "floor", want)
        if got < want:
            held[d.persona] = held.get(d.persona, 0) + want - got

    pending: dict[str, float] = {}
    coming = 2.0 * learning.payout_half_life * learning.floor_per_day  # floor tracks reported by then
    if learning.rank == "pending":
        for (persona, _g), s in stats.items():
            pending[persona] = pending.get(persona, 0.0) + s.pending
    draws: list[tuple[float, str, Demand, str]] = []
    for d in demands:
        for g in d.genres:
            e, mean_p, k_p = est[(d.persona, g)]
            gs = stats.get((d.persona, g), ArmStats())
            ng = learning.genre_prior_tracks * d.cost
            later = pending.get(d.persona, 0.0) + coming if learning.rank == "pending" else 0.0
            persona_draw = _gamma_draw(mean_p, k_p + later / cv2, rng)
            mean = (persona_draw * ng + gs.revenue) / (ng + gs.exposure)
            k_g = learning.genre_prior_tracks + gs.tracks + (gs.pending if learning.rank == "pending" else 0.0)
            draw = _gamma_draw(mean, k_g / cv2, rng)
            draws.append((draw * max(d.boost, 0.0), g, d, d.persona))
    draws.sort(key=lambda x: (-x[0], x[3], x[1]))
    drawn = {(d.persona, g): v for v, g, d, _ in draws}
    for _value, genre, d, _ in draws:
        room = d.cap - taken.get(d.persona, 0)
        if room > 0:
            take(d, genre, "expected_return", room)

    out = []
    by_name = {d.persona: d for d in demands}
    for (persona, genre, reason), n in sorted(counts.items()):
        e = est[(persona, genre)][0]
        draw = 0.0 if reason == "floor" else drawn[(persona, genre)]
        out.append(Allocation(persona, genre, n, reason, e.expected, e.uncertainty, draw, by_name[persona].boost))
    return AllocationPlan(tuple(out), tuple(Held(p, "budget_exhausted", n) for p, n in sorted(held.items())))
