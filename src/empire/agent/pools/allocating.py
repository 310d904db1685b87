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
one is chosen now and then, when its draw is lucky, which is how its estimate improves.

Before that, every active persona owed a *floor* (the caller counts the floor cadence: e.g. one
track per week) gets it, highest priority first, in its least-observed genre: no persona starves
of data, so a fading earner and a rising newcomer are both noticed.

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
    "choose_memory",
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
    memory_choices: tuple[float, ...] = ()  # multiples of memory_half_life to choose from (`choose_memory`)
    rank: str = "thompson"  # "thompson": by posterior draws; "expected": by the estimate (the floor explores)


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


def choose_memory(tracks: Sequence[TrackReturn], learning: Learning, window: float = 7.0) -> tuple[float, dict[float, float]]:
    """The memory half-life, among `memory_choices` x `memory_half_life`, that best predicted the
    revenue of the tracks that have matured (rolling-origin validation on the operation's own data).

    How fast to forget is a property of the market (how fast audiences drift against how noisy one
    track is), not a constant: it is measured. The tracks at least `settled = 4 x payout_half_life`
    days old (about 94 % reported) are cut into weeks by age; for each week, each candidate
    half-life predicts each persona's revenue from the tracks published before that week only
    (decayed by how much older they are), as the allocator would have when it planned them; the
    score is the Poisson deviance of the weeks' revenue per persona, summed over the weeks (one
    week alone is too noisy to choose by). One pass over the tracks per candidate. No settled
    week yet (the first weeks), or no choice configured: `memory_half_life` as set. Returns the
    chosen half-life (days) and each candidate's score."""
    if not learning.memory_choices:
        return learning.memory_half_life, {}
    settled = 4.0 * learning.payout_half_life
    weeks: dict[int, list[tuple[str, float, float, float, float]]] = {}  # week -> (persona, age past its end, revenue, matured cost, cost)
    for t in tracks:
        if t.age_days < settled:
            continue
        matured = t.matured if t.matured is not None else 1.0 - 0.5 ** (t.age_days / learning.payout_half_life)
        wk = int((t.age_days - settled) // window)
        weeks.setdefault(wk, []).append((t.persona, t.age_days - settled - window * (wk + 1), t.revenue, matured * t.cost, t.cost))
    if len(weeks) < 2:
        return learning.memory_half_life, {}
    order = sorted(weeks, reverse=True)  # oldest week first
    scores: dict[float, float] = {}
    for factor in learning.memory_choices:
        half_life = factor * learning.memory_half_life
        step = 0.5 ** (window / half_life)
        rev: dict[str, float] = {}
        exp: dict[str, float] = {}
        total_r = total_e = deviance = 0.0
        for n, wk in enumerate(order):
            if n:  # predict this week from the older ones
                mu0 = total_r / total_e if total_e > 0 else learning.prior_return
                held: dict[str, list[float]] = {}
                for persona, _lag, r, c, cost in weeks[wk]:
                    h = held.setdefault(persona, [0.0, 0.0, 0.0, 0.0])
                    h[0] += r
                    h[1] += c
                    h[2] += cost
                    h[3] += 1
                for persona, (r, c, cost, k) in held.items():
                    n0 = learning.prior_tracks * cost / k
                    predicted = c * (mu0 * n0 + rev.get(persona, 0.0)) / (n0 + exp.get(persona, 0.0))
                    if predicted > 0:
                        deviance += 2.0 * ((r * math.log(r / predicted) if r > 0 else 0.0) - (r - predicted))
            # then this week joins the evidence for the next (younger) one, which ends `window` later
            for persona in rev:
                rev[persona] *= step
                exp[persona] *= step
            total_r *= step
            total_e *= step
            for persona, lag, r, c, _cost in weeks[wk]:
                w = 0.5 ** ((lag + window) / half_life) if lag + window > 0 else 1.0
                rev[persona] = rev.get(persona, 0.0) + w * r
                exp[persona] = exp.get(persona, 0.0) + w * c
                total_r += w * r
                total_e += w * c
        scores[half_life] = deviance
    return min(scores, key=lambda h: (scores[h], h)), scores


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

    for d in sorted(demands, key=lambda d: (d.priority, d.persona)):
        want = min(d.floor, d.cap)
        if want <= 0:
            continue
        genre = min(d.genres, key=lambda g: (est[(d.persona, g)][0].tracks, d.genres.index(g)))
        got = take(d, genre, "floor", want)
        if got < want:
            held[d.persona] = held.get(d.persona, 0) + want - got

    pending: dict[str, float] = {}
    if learning.rank == "pending":
        for (persona, _g), s in stats.items():
            pending[persona] = pending.get(persona, 0.0) + s.pending
    draws: list[tuple[float, str, Demand, str]] = []
    for d in demands:
        for g in d.genres:
            e, mean_p, k_p = est[(d.persona, g)]
            gs = stats.get((d.persona, g), ArmStats())
            ng = learning.genre_prior_tracks * d.cost
            if learning.rank == "expected":
                draw = e.expected
            else:  # "pending": drawn from the posterior as it will be when this track's revenue is in
                persona_draw = _gamma_draw(mean_p, k_p + pending.get(d.persona, 0.0) / cv2, rng)
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
