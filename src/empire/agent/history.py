"""`StatusHistory`: the last hours of each target in memory, for the status page's charts.

Why in memory and not the journal: the page redraws every few seconds, and demand, ready capacity
and the forecast band of the last hours are a few thousand numbers that the loop already holds at
the end of each tick; reading them back from the decisions table on every refresh would make the
page a load on the state database. The ring is bounded (`window`, and `max_points` per target
whatever the interval), fed by the loop after every tick (`ControlLoop.tick_listeners`), and empty
after a restart (the journal keeps the decisions; `empire explain` reads them).

What a point holds, in the units of the target's demand signal (its `predictive.signal`, else its
first `total` signal, else its first signal):

* `demand`: a `total` signal's value; an `average` signal's value x the replicas it averages over
  (the load, in target units);
* `capacity`: ready replicas x the signal's target (what the ready replicas serve at target);
* `forecast` at `forecast_at`: the scaling forecast (its quantile, `scheduling_buffer` ahead);
* `low`/`high` at `band_at`: the horizon forecast's lowest and highest quantiles (`predictive.horizon` ahead).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from empire.agent.types import Decision
from empire.policies.scaling import Signal, SignalType, Target

__all__ = ["HistoryPoint", "StatusHistory", "demand_signal"]


@dataclass(frozen=True)
class HistoryPoint:
    at: datetime
    demand: float | None
    capacity: float | None
    replicas: int | None
    ready: int | None
    desired: int | None
    forecast: float | None = None
    forecast_at: datetime | None = None
    low: float | None = None
    high: float | None = None
    band_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t is not None else None

        return {"at": iso(self.at), "demand": self.demand, "capacity": self.capacity, "replicas": self.replicas,
                "ready": self.ready, "desired": self.desired, "forecast": self.forecast,
                "forecast_at": iso(self.forecast_at), "low": self.low, "high": self.high,
                "band_at": iso(self.band_at)}  # fmt: skip


def demand_signal(target: Target) -> Signal | None:
    """The signal a target's chart shows (module docstring)."""
    if not target.signals:
        return None
    wanted = target.predictive.signal if target.predictive is not None else None
    for s in target.signals:
        if s.name == wanted:
            return s
    return next((s for s in target.signals if s.type == SignalType.total), target.signals[0])


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and v == v else None


def point_of(target: Target, d: Decision) -> HistoryPoint:
    """One decision as a chart point (PURE)."""
    signal = demand_signal(target)
    details = d.details or {}
    ready = details.get("ready")
    ready = ready if isinstance(ready, int) else None
    demand = capacity = None
    if signal is not None:
        value = _number(((details.get("signals") or {}).get(signal.name) or {}).get("value"))
        if signal.type == SignalType.total:
            demand = value
        elif value is not None:
            over = ready if ready is not None else d.current
            demand = value * over if over is not None else None
        if ready is not None:
            capacity = ready * signal.target
    forecast = forecast_at = low = high = band_at = None
    f = details.get("forecast")
    if isinstance(f, dict) and signal is not None and f.get("signal") == signal.name:
        forecast = _number(f.get("value"))
        seconds = _number(f.get("horizon_seconds"))
        forecast_at = d.at + timedelta(seconds=seconds) if forecast is not None and seconds is not None else None
        h = f.get("horizon")
        if isinstance(h, dict):
            qs = [v for v in (_number(x) for x in (h.get("quantiles") or {}).values()) if v is not None]
            at = h.get("at")
            if qs and isinstance(at, str):
                try:
                    band_at = datetime.fromisoformat(at)
                    low, high = min(qs), max(qs)
                except ValueError:
                    pass
    return HistoryPoint(d.at, demand, capacity, d.current, ready, d.desired, forecast, forecast_at, low, high, band_at)


class StatusHistory:
    def __init__(self, targets: Callable[[], tuple[Target, ...]], window: timedelta = timedelta(hours=6),
                 max_points: int = 1440) -> None:  # fmt: skip
        self.targets, self.window, self.max_points = targets, window, max_points
        self._points: dict[str, deque[HistoryPoint]] = {}

    def on_tick(self, decisions: list[Decision]) -> None:
        """A `ControlLoop.tick_listeners` entry: one point per decided target."""
        by_name = {t.name: t for t in self.targets()}
        for d in decisions:
            target = by_name.get(d.target)
            if target is None:
                continue
            ring = self._points.setdefault(d.target, deque(maxlen=self.max_points))
            ring.append(point_of(target, d))
            while ring and d.at - ring[0].at > self.window:
                ring.popleft()
        for gone in set(self._points) - set(by_name):  # a target the policy no longer has
            del self._points[gone]

    def points(self, target: str) -> list[HistoryPoint]:
        return list(self._points.get(target, ()))

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [p.as_dict() for p in ring] for name, ring in self._points.items()}
