"""The predictive guard: a forecast acts only where, on this workload's own live demand, it has
beaten plain reactive scaling. PURE: no I/O, no clock (times are arguments), no globals.

Why a guard and not a better model: a forecaster tuned on one kind of traffic is wrong on another
(bursty tweet volumes, Poisson arrivals, flash crowds), and a wrong forecast that *lowers* headroom
causes outages HPA would not have had. So the question "may the forecast act?" is answered per
target, on the evidence of the target's own recent demand, against the baseline the user would
otherwise run: HPA at the policy's own target utilization.

How. For every observed demand point the guard advances a few **shadow scalers**, counterfactual
controllers that see the same demand as the real one:

* `reactive`: HPA's rule (`ceil(demand / target)`, the tolerance dead band, the policy's scale-down
  stabilization window), which is what the user gets without predictive scaling;
* one *variant* per (forecast quantile, scale-down window): the same reactive rule, plus the
  forecast's replicas when they are more (`max(reactive, forecast)`: a forecast only ever adds), and
  a scale-down window that may be shorter than the policy's (scaling down sooner is where the savings
  come from). The quantiles are the policy's and its neighbours on a log scale of the miss rate
  (4x, 2x, 1x and 0.4x `1 - quantile`); the windows are 0.5x, 1x and 1.5x the scheduling buffer and
  the policy's own, never longer than the policy's (the guard only ever scales down sooner).

Each shadow keeps books per hour: minutes (ticks) under-provisioned (demand above the replicas that
would be ready: a replica asked for is ready `scheduling_buffer` later, removal is immediate) and
replica-seconds. Over the last `evaluation_window` (7 days by default, once `min_evaluation` has
passed) a variant is **eligible** when it was under-provisioned clearly less often than the reactive
shadow (by at least 3 ticks and one standard deviation of reactive's count, so that luck cannot
explain it) *and* cost fewer replica-seconds by at least one standard deviation of the difference
(from the hourly differences: chosen among many variants, one cheaper by luck would cost more than
reactive afterwards); the one with the fewest under-provisioned ticks (then
the cheapest) is chosen. A last shadow, `live`, follows what the guard let act at each step: the
target itself. While, over the books, it has used more replica-seconds than reactive would have (the
chosen variant turned out dearer than its week of evidence said), the cheapest eligible variant that
also cost no more than reactive in the last hour acts instead of the one fewest short (`repaying`),
or none, until the books balance: the excess cannot grow by more than about an hour's worth. Where reactive is (nearly) never short, nothing can be won and the forecast
does not act. No eligible variant: the forecast does not act (`unproven`) and the target
scales as HPA would. The counterfactual is exact for a demand that does not depend on the replicas
(requests, queue arrivals), which is what predictive scaling forecasts.

Two online skill measures are kept beside the books, both strictly causal (a forecast is scored
only when its target time has been observed):

* **exceedance**: how often actual demand exceeded the chosen variant's forecast. A sudden run of
  misses (more than a binomial test allows at the quantile, over the last `gate_window` forecasts)
  closes the gate at once (`skill_lost`) until the misses drop out of that window: the slow books
  would take days to notice, this takes minutes;
* **skill**: `1 - pinball(model) / pinball(seasonal naive)` at the policy's quantile over the same
  recent forecasts, reported (metrics, `/status`, the journal) and required to be positive.

Shadows approximate HPA's stabilization: tolerance, the stabilization windows and the scale-up rate
policies (as if each policy's period were one step; the scale-down ones rarely bind at one tick per
interval); they start at the current replicas.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "GateState",
    "GuardSettings",
    "GuardVerdict",
    "PredictiveGuard",
    "ShadowBank",
    "Variant",
    "trip_count",
    "variant_grid",
]

_MISS_FACTORS = (4.0, 2.0, 1.0, 0.4)  # miss rates of the variants, relative to the policy's 1 - quantile
_WINDOW_FACTORS = (0.5, 1.0, 1.5)  # scale-down windows of the variants, relative to the scheduling buffer


class GateState:
    """Why the forecast may or may not act (string constants: they reach the journal and metrics)."""

    trusted = "trusted"  # a variant beat reactive on the evidence: it acts
    unproven = "unproven"  # not enough evidence yet, or no variant beat reactive: reactive acts
    skill_lost = "skill_lost"  # a sudden run of misses (or no skill over seasonal naive): reactive acts


@dataclass(frozen=True)
class Variant:
    """One way the forecast could act: provision for `quantile`, scale down after `window` seconds."""

    quantile: float
    window: float  # scale-down stabilization window, seconds

    @property
    def name(self) -> str:
        return f"q{self.quantile:g}/{_fmt_seconds(self.window)}"


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def variant_grid(quantile: float, buffer: float, policy_window: float) -> tuple[Variant, ...]:
    """The variants for a policy: quantiles around the policy's, windows around the scheduling buffer."""
    miss = 1.0 - quantile
    qs = sorted({round(min(0.999, max(0.5, 1.0 - miss * f)), 6) for f in _MISS_FACTORS})
    windows = sorted({*(min(round(buffer * f, 3), policy_window) for f in _WINDOW_FACTORS), policy_window})
    return tuple(Variant(q, w) for q in qs for w in windows)


def trip_count(n: int, miss: float, p: float = 1e-3) -> int:
    """The fewest misses among `n` forecasts whose chance is below `p` if each misses with `miss`
    (a one-sided binomial test, computed exactly)."""
    term = (1.0 - miss) ** n  # P(X = 0)
    tail = 1.0
    for k in range(n + 1):
        tail -= term  # P(X >= k + 1)
        if tail < p:
            return k + 1
        term = term * (n - k) / (k + 1) * miss / (1.0 - miss)
    return n + 1


@dataclass(frozen=True)
class GuardSettings:
    """Everything the guard needs from the policy, in seconds and replica units."""

    step: float  # seconds between observations (the loop interval)
    target: float  # demand per replica for reactive scaling (the signal's target: HPA's rule)
    capacity: float  # demand one replica serves at full capacity (predictive.target): the books' yardstick
    tolerance: float
    policy_window: float  # the policy's scale-down stabilization window, seconds
    buffer: float  # scheduling buffer (replica start-up time), seconds
    quantile: float
    min_replicas: int = 1
    max_replicas: int = 10_000
    evaluation_window: float = 7 * 86400.0
    min_evaluation: float = 12 * 3600.0
    gate_window: int = 60  # recent forecasts the sudden-miss test looks at
    # scale_up rate policies as (type "pods"|"percent", value), `up_select` "max"|"min"|"disabled" (HPA's
    # rules, as if each period were one step): () is no limit
    scale_up: tuple[tuple[str, float], ...] = ()
    up_select: str = "max"
    bucket: float = 3600.0  # the books' granularity

    @property
    def delay_steps(self) -> int:
        return max(1, math.ceil(self.buffer / self.step - 1e-9))

    def up_limit(self, current: int) -> int:
        """The most replicas one step may reach from `current` (HPA's scale-up rate policies; a spike to
        a hundred times the demand takes the live target several steps, and so it does the shadows)."""
        if not self.scale_up:
            return self.max_replicas
        if self.up_select == "disabled":
            return current
        proposed = [current + v if kind == "pods" else math.ceil(current * (1 + v / 100)) for kind, v in self.scale_up]
        return min(proposed) if self.up_select == "min" else max(proposed)


class ShadowBank:
    """The counterfactual controllers (see the module docstring), one column each, stepped together:
    column 0 is reactive scaling, column i in 1..len(variants) is `variants[i - 1]`, and the last column
    (`LIVE`) follows what the guard let act at each step (a variant, or reactive): the target itself, as
    the guard's verdicts made it behave. Books in hourly buckets.

    Plain Python lists, not numpy: with a score of columns, a numpy call costs more than the loop."""

    def __init__(self, variants: tuple[Variant, ...], settings: GuardSettings, replicas: int) -> None:
        self.s = settings
        self.names = ("reactive", *(v.name for v in variants), "live")
        self.windows = [settings.policy_window, *(v.window for v in variants), settings.policy_window]
        self.longest = max(self.windows)
        width = len(self.names)
        self.replicas = [replicas] * width
        self.recent: deque[tuple[float, list[int]]] = deque()  # (time, raw recommendations)
        self.asked: deque[list[int]] = deque([list(self.replicas)] * (settings.delay_steps + 1),
                                             maxlen=settings.delay_steps + 1)  # fmt: skip
        self.books: deque[tuple[float, list[float], list[float], list[float]]] = deque()  # start, [ticks], under, cost
        self.under = [0.0] * width
        self.cost = [0.0] * width
        self.ticks = 0.0

    def step(self, at: float, demand: float, forecast_replicas: list[int] | None, live: int | None = None) -> None:
        """Advance one observation: decide like each controller would, then book the tick.
        `forecast_replicas`: one per variant (column 1..), or None while there is no forecast; `live`: the
        variant that acts now (its index in `variants`), or None when reactive does."""
        s = self.s
        if forecast_replicas is not None:
            forecast_replicas = [*forecast_replicas, forecast_replicas[live] if live is not None else 0]
        self.windows[-1] = self.windows[live + 1] if live is not None else s.policy_window
        target, tolerance, lo, hi = s.target, s.tolerance, s.min_replicas, s.max_replicas
        plain = math.ceil(demand / target - 1e-9)
        raw = []
        for i, cur in enumerate(self.replicas):
            r = cur if cur > 0 and abs(1.0 - demand / (target * cur)) <= tolerance else plain
            if i and forecast_replicas is not None and forecast_replicas[i - 1] > r:
                r = forecast_replicas[i - 1]
            raw.append(min(max(r, lo), hi))
        while self.recent and self.recent[0][0] <= at - self.longest:
            self.recent.popleft()
        down = list(raw)
        for when, earlier in self.recent:
            for i, window in enumerate(self.windows):
                if when > at - window and earlier[i] > down[i]:
                    down[i] = earlier[i]
        self.recent.append((at, raw))
        limit = s.up_limit
        self.replicas = [min(max(c, r), d, limit(c)) if r > c else min(max(c, r), d)
                         for c, r, d in zip(self.replicas, raw, down, strict=True)]  # fmt: skip
        self.asked.append(self.replicas)
        ready = [min(column) for column in zip(*self.asked, strict=True)]  # asked `buffer` ago, not removed since
        capacity = s.capacity
        under = [1.0 if demand - r * capacity > 1e-9 else 0.0 for r in ready]
        start = at - at % s.bucket
        if not self.books or self.books[-1][0] != start:
            self.books.append((start, [0.0], [0.0] * len(raw), [0.0] * len(raw)))
            self.forget(at - s.evaluation_window)
        _, ticks, book_under, book_cost = self.books[-1]
        ticks[0] += 1
        self.ticks += 1
        step = s.step
        for i, (u, r) in enumerate(zip(under, self.replicas, strict=True)):
            book_under[i] += u
            self.under[i] += u
            book_cost[i] += r * step
            self.cost[i] += r * step

    def forget(self, horizon: float) -> None:
        """Drop the buckets that start at or before `horizon`."""
        while self.books and self.books[0][0] <= horizon:
            _, ticks, under, cost = self.books.popleft()
            self.ticks -= ticks[0]
            self.under = [a - b for a, b in zip(self.under, under, strict=True)]
            self.cost = [a - b for a, b in zip(self.cost, cost, strict=True)]

    def state(self) -> dict[str, Any]:
        return {"names": list(self.names),
                "books": [[start, ticks[0], under, cost] for start, ticks, under, cost in self.books]}  # fmt: skip

    def restore(self, state: dict[str, Any]) -> bool:
        """Books saved by an earlier process with the same variants (else nothing: False)."""
        if list(state.get("names", [])) != list(self.names):
            return False
        self.books.clear()
        for start, ticks, under, cost in state.get("books", []):
            self.books.append((float(start), [float(ticks)], [float(u) for u in under], [float(c) for c in cost]))
        self.ticks = sum(b[1][0] for b in self.books)
        self.under = [sum(b[2][i] for b in self.books) for i in range(len(self.names))]
        self.cost = [sum(b[3][i] for b in self.books) for i in range(len(self.names))]
        return True


@dataclass(frozen=True)
class GuardVerdict:
    """What the forecast may do now, and the evidence."""

    state: str
    variant: Variant | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def trusted(self) -> bool:
        return self.state == GateState.trusted and self.variant is not None

    def summary(self) -> dict[str, Any]:
        """What each decision records: the state, the variant, why (the figures: `PredictiveGuard.evidence`)."""
        return {"state": self.state, **self.details}


class PredictiveGuard:
    """Shadows for reactive and every variant, the online skill measures, and the choice."""

    def __init__(self, settings: GuardSettings, replicas: int = 1) -> None:
        self.s = settings
        self.variants = variant_grid(settings.quantile, settings.buffer, settings.policy_window)
        self.bank = ShadowBank(self.variants, settings, max(settings.min_replicas, replicas))
        self.pending: deque[tuple[float, dict[float, float], float | None]] = deque()  # (due, quantile->value, naive)
        self.misses: dict[float, deque[int]] = {q: deque() for q in self.quantiles}
        self.miss_sums: dict[float, int] = dict.fromkeys(self.quantiles, 0)
        self._column_quantile = [self.quantiles.index(v.quantile) for v in self.variants]
        self._selection: dict[bool, tuple[tuple[Any, ...], tuple[int, float, float] | None, float]] = {}
        self._verdict: tuple[tuple[Any, ...], GuardVerdict] | None = None
        self._live: int | None = None  # the variant acting now (index), None: reactive
        self.losses: deque[tuple[float, float]] = deque()  # (model, naive) pinball losses, the last day's forecasts
        self.loss_sums = [0.0, 0.0]
        self.loss_keep = max(settings.gate_window, round(86400 / settings.step))
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.trip = {q: trip_count(settings.gate_window, 1.0 - q) for q in self.quantiles}

    @property
    def quantiles(self) -> tuple[float, ...]:
        return tuple(sorted({v.quantile for v in self.variants}))

    def forecast_replicas(self, value: float) -> int:
        return math.ceil(max(value, 0.0) / self.s.capacity - 1e-9)

    def observe(
        self, at: datetime, demand: float, forecasts: dict[float, float] | None, naive: float | None = None
    ) -> None:
        """One observation of the demand at `at`, then the forecasts made at `at` for `at + buffer`
        (`forecasts`: quantile -> value; None while no model is fitted; `naive`: the seasonal-naive
        forecast at the policy's quantile, for the skill measure). Points must come in time order."""
        t = at.timestamp()
        if self.last_at is not None and t <= self.last_at:
            return  # already seen (the service may hand the same point twice)
        if not math.isfinite(demand) or demand < 0:
            return
        self.last_at = t
        if self.first_at is None:
            self.first_at = t
        self._score(t, demand)
        replicas = None
        if forecasts and all(q in forecasts for q in self.quantiles):
            per_quantile = [self.forecast_replicas(forecasts[q]) for q in self.quantiles]
            replicas = [per_quantile[i] for i in self._column_quantile]
        self.bank.step(t, demand, replicas, self._live)
        if forecasts:
            self.pending.append((t + self.s.buffer, dict(forecasts), naive))

    def _score(self, t: float, demand: float) -> None:
        """Score every forecast whose target time has come (causal: only past forecasts, this demand)."""
        half = self.s.step / 2
        while self.pending and self.pending[0][0] <= t + half:
            due, values, naive = self.pending.popleft()
            if due < t - half:
                continue  # its target time was not observed (a gap): not scored
            for q, value in values.items():
                window = self.misses.get(q)
                if window is not None:
                    miss = 1 if demand > value + 1e-9 else 0
                    window.append(miss)
                    self.miss_sums[q] += miss
                    if len(window) > self.s.gate_window:
                        self.miss_sums[q] -= window.popleft()
            model = values.get(self.s.quantile)
            if model is not None and naive is not None:
                pair = (_pinball(demand, model, self.s.quantile), _pinball(demand, naive, self.s.quantile))
                self.losses.append(pair)
                self.loss_sums = [self.loss_sums[0] + pair[0], self.loss_sums[1] + pair[1]]
                if len(self.losses) > self.loss_keep:
                    old = self.losses.popleft()
                    self.loss_sums = [self.loss_sums[0] - old[0], self.loss_sums[1] - old[1]]

    def skill(self) -> float | None:
        """1 - pinball(model) / pinball(seasonal naive) over the recent forecasts (None: not measured)."""
        if len(self.losses) < 30:
            return None
        model, naive = self.loss_sums
        if naive <= 1e-12:
            return 0.0 if model > 0 else None
        return 1.0 - model / naive

    def exceedance(self, quantile: float) -> tuple[int, int]:
        """(misses, forecasts scored) among the last `gate_window` forecasts at `quantile`."""
        window = self.misses.get(quantile)
        return (self.miss_sums[quantile], len(window)) if window is not None else (0, 0)

    def verdict(self) -> GuardVerdict:
        """The variant that may act now, or why none may (the same object until that changes: it runs
        every tick; `evidence()` has the figures behind it)."""
        seen = 0.0 if self.first_at is None or self.last_at is None else self.last_at - self.first_at
        skill = self.skill()
        if seen < self.s.min_evaluation:
            key: tuple[Any, ...] = ("evaluating", int(seen // 3600))
        else:
            repay = self.overspent() > 0
            chosen, margin = self._select(repay)
            if chosen is None:
                key = ("no variant", round(margin), repay)
            else:
                q = self.variants[chosen[0]].quantile
                misses, _ = self.exceedance(q)
                key = ("variant", chosen[0], misses >= self.trip[q], skill is not None and skill <= 0, repay)
        if self._verdict is not None and self._verdict[0] == key:
            return self._verdict[1]
        verdict = self._judge(key, seen, skill)
        self._verdict = (key, verdict)
        self._live = self.variants.index(verdict.variant) if verdict.trusted and verdict.variant else None
        return verdict

    def overspent(self) -> float:
        """Replica-seconds the target itself (the live column) used beyond what reactive would have, over
        the books. Positive: the cheapest eligible variant that cost no more than reactive in the last hour
        acts (repaying) instead of the one fewest short, or none. A variant cheaper than reactive over
        the week can cost more this week; only the live books see it."""
        return float(self.bank.cost[-1] - self.bank.cost[0])

    def _judge(self, key: tuple[Any, ...], seen: float, skill: float | None) -> GuardVerdict:
        if key[0] == "evaluating":
            why = f"evaluating: {seen / 3600:.1f} h of {self.s.min_evaluation / 3600:g} h"
            return GuardVerdict(GateState.unproven, None, {"why": why})
        if key[0] == "no variant":
            why = f"no variant was short at least {key[1]} ticks less often than reactive at no more replica-hours"
            return GuardVerdict(GateState.unproven, None, {"why": why})
        v = self.variants[key[1]]
        if key[2]:
            misses, n = self.exceedance(v.quantile)
            why = f"{misses} of the last {n} forecasts missed (trips at {self.trip[v.quantile]})"
            return GuardVerdict(GateState.skill_lost, None, {"why": why, "variant": v.name})
        if key[3]:
            why = f"no better than the seasonal-naive forecast on recent demand (skill {skill:.3f})"
            return GuardVerdict(GateState.skill_lost, None, {"why": why, "variant": v.name})
        if key[4]:
            why = (
                f"repaying: the target used {self.overspent() / 3600:.1f} replica-hours more than reactive would "
                "have, so the cheapest variant that beats reactive acts"
            )
            return GuardVerdict(GateState.trusted, v, {"variant": v.name, "why": why})
        return GuardVerdict(GateState.trusted, v, {"variant": v.name})

    def evidence(self) -> dict[str, Any]:
        """The figures behind the verdict (for `/status`): both books, the variant, the skill measures."""
        bank, verdict = self.bank, self.verdict()
        seen = 0.0 if self.first_at is None or self.last_at is None else self.last_at - self.first_at
        out: dict[str, Any] = {
            "state": verdict.state, **verdict.details,
            "evaluated_hours": round(min(seen, self.s.evaluation_window) / 3600, 1),
            "reactive": {"under_ticks": int(bank.under[0]), "ticks": int(bank.ticks),
                         "replica_hours": round(float(bank.cost[0]) / 3600, 1)},
            "live": {"under_ticks": int(bank.under[-1]), "replica_hours": round(float(bank.cost[-1]) / 3600, 1)},
        }  # fmt: skip
        skill = self.skill()
        if skill is not None:
            out["skill"] = round(skill, 4)
        chosen, _ = self._select(self.overspent() > 0)
        if chosen is not None:
            v = self.variants[chosen[0]]
            misses, n = self.exceedance(v.quantile)
            out["variant"] = {"name": v.name, "quantile": v.quantile, "scale_down_window": v.window,
                              "under_ticks": int(chosen[1]), "replica_hours": round(chosen[2] / 3600, 1)}  # fmt: skip
            out["exceedance"] = {"misses": misses, "of": n, "expected": round((1 - v.quantile) * n, 2),
                                 "trip_at": self.trip[v.quantile]}  # fmt: skip
        return out

    def _select(self, repay: bool = False) -> tuple[tuple[int, float, float] | None, float]:
        """The eligible variant with the fewest short ticks, then the cheapest (`repay`: the cheapest, then
        the fewest short): (index, under, cost) or None, and the margin it had to beat reactive by. Chosen again when an hour's bucket opens (or the books
        were restored), not every tick: the evidence is a week, an hour more does not change it."""
        bank = self.bank
        key = (len(bank.books), bank.books[-1][0] if bank.books else None, bank.ticks if not bank.books else None)
        cached = self._selection.get(repay)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        r_under, r_cost = float(bank.under[0]), float(bank.cost[0])
        # Fewer misses by a margin a count's noise cannot explain: at least 3, and one standard deviation of
        # reactive's (Poisson) count. Where reactive is (nearly) never short, no variant can show that:
        # nothing is left to win there, only to lose, so reactive keeps acting.
        margin = max(3.0, math.sqrt(r_under))
        eligible = [(under, cost, i) for i, (under, cost) in enumerate(zip(bank.under[1:-1], bank.cost[1:-1], strict=True))
                    if under <= r_under - margin and cost + self._cost_noise(i + 1) <= r_cost]  # fmt: skip
        if repay and bank.books:
            # repaying: only a variant that costs no more than reactive now (the last complete hour) pays back
            last = bank.books[-2 if len(bank.books) > 1 else -1][3]
            eligible = [e for e in eligible if last[e[2] + 1] <= last[0]]
        chosen = None
        if eligible:
            under, cost, i = min(eligible, key=lambda e: (e[1], e[0]) if repay else e)  # cheapest / fewest misses
            chosen = (i, float(under), float(cost))
        self._selection[repay] = (key, chosen, margin)
        return chosen, margin

    def _cost_noise(self, column: int) -> float:
        """One standard deviation of the week's total replica-second difference between a variant and
        reactive, from its hourly differences: "no more replica-hours" must hold by more than what the
        hours' ups and downs explain. Without it, picking the best of many variants on a week picks one
        that was cheaper by luck (the winner's curse), and it costs more than reactive afterwards."""
        diffs = [cost[column] - cost[0] for _, _, _, cost in self.bank.books]
        if len(diffs) < 2:
            return 0.0
        mean = sum(diffs) / len(diffs)
        return math.sqrt(sum((d - mean) ** 2 for d in diffs))

    def totals(self, variant: Variant | None) -> tuple[float, float, float]:
        """(under-provisioned ticks, ticks, replica-seconds) of reactive (None) or a variant."""
        i = 0 if variant is None else self.variants.index(variant) + 1
        return float(self.bank.under[i]), float(self.bank.ticks), float(self.bank.cost[i])

    # -- persistence: the books survive a restart (the model registry keeps them) -----------------
    def state(self) -> dict[str, Any]:
        return {"first_at": self.first_at, "last_at": self.last_at, "bank": self.bank.state()}

    def restore(self, state: dict[str, Any], now: datetime) -> None:
        """Books from an earlier process with the same variants (a policy that changed them starts the
        evaluation afresh); evidence older than the evaluation window is dropped."""
        horizon = now.timestamp() - self.s.evaluation_window
        first = state.get("first_at")
        if first is None or not self.bank.restore(state.get("bank", {})):
            return
        self.first_at = max(float(first), horizon)
        self.last_at = float(state.get("last_at") or first)
        self.bank.forget(horizon)
        self._selection, self._verdict = {}, None
        if self.last_at <= horizon:  # nothing recent is left: start afresh
            self.first_at = self.last_at = None


def _pinball(actual: float, forecast: float, q: float) -> float:
    diff = actual - forecast
    return max(q * diff, (q - 1) * diff)
