"""Demand traces for the backtest: one value per minute, with a validity mask.

Why resample to minutes here and not in the simulator: the cluster model counts *minutes* (a minute
is under-provisioned when its demand exceeds ready capacity), and the loop is evaluated once per
minute, so every trace becomes requests per minute first:

* a per-minute trace is used as is (missing minutes are gaps, not zeros);
* a coarser trace (NYC taxi: passengers per 30 min) is divided by its step in minutes, anchored
  at the middle of each interval and linearly interpolated between them (the rate changes smoothly
  rather than in 30-minute stairs); `noise="poisson"` then draws each minute's count from a
  Poisson law with that rate, which is what arrivals at that rate look like minute by minute;
* a finer trace (per second) is summed per minute.

A `status` column marks known-bad rows: any value other than `ok` (NASA: `not_logged`,
`outage`) keeps the value for the controller to see (an empty value is a failed scrape) but the
minute is not counted by the backtest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np

from empire.agent.observers.replay import ReplayObserver
from empire.errors import ConfigError
from empire.seriesio import AUTO, read_series_csv

__all__ = ["DEFAULT_TRACE", "MAX_TRACE_DAYS", "DemandTrace", "default_trace_path", "load_trace", "synthetic_trace"]

DEFAULT_TRACE = "nasa_http_per_minute.csv.gz"
MINUTE = 60.0
MAX_TRACE_DAYS = 1461
"""Four years of minutes (2.1 million, ~20 MB per array): a trace spanning the years 1-9999 once
asked numpy for 78 GiB."""


@dataclass(frozen=True)
class DemandTrace:
    """Requests per minute from `start`; `values` NaN where nothing was recorded; `ok` = counted."""

    name: str
    start: datetime
    values: np.ndarray
    ok: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    @property
    def step(self) -> float:
        return MINUTE

    def at(self, i: int) -> datetime:
        return self.start + timedelta(minutes=i)

    @property
    def valid_minutes(self) -> int:
        return int(self.ok.sum())

    def head(self, minutes: int) -> DemandTrace:
        return DemandTrace(self.name, self.start, self.values[:minutes], self.ok[:minutes])

    def observer(self, target: str = "", signal: str = "demand", lag: float = 0.0) -> ReplayObserver:
        """The trace as the loop sees it: one `signal` row per minute (an empty value: a failed scrape),
        visible `lag` seconds after the minute starts (0: the tick at minute t sees minute t)."""
        shift = timedelta(seconds=lag)
        rows = [(self.at(i) + shift, target, signal, None if math.isnan(v) else float(v))
                for i, v in enumerate(self.values)]  # fmt: skip
        return ReplayObserver(rows)


def default_trace_path() -> Path:
    return Path(str(resources.files("empire") / "data" / DEFAULT_TRACE))


def _read_rows(path: Path, value_column: str | None, status_column: str | None, timestamp_column: str):
    series = read_series_csv(
        path, timestamp_column=timestamp_column, value_column=value_column, status_column=status_column or AUTO
    )
    if len(series) < 2:
        raise ConfigError(f"{path}: a trace needs at least two rows")
    return series.seconds, series.values, series.ok.copy()


def load_trace(
    path: str | Path | None = None,
    *,
    value_column: str | None = None,
    status_column: str | None = None,
    timestamp_column: str = "timestamp",
    scale: float = 1.0,
    noise: str = "none",
    seed: int = 0,
    days: float | None = None,
) -> DemandTrace:
    """Read a `timestamp,value[,status]` CSV (or .csv.gz; default: the shipped NASA trace) as minutes;
    `days`: only the first days of it. At most `MAX_TRACE_DAYS` of minutes are replayed."""
    p = Path(path) if path is not None else default_trace_path()
    times, values, ok = _read_rows(p, value_column, status_column, timestamp_column)
    if days is not None:
        keep = times < times[0] + days * 86400
        times, values, ok = times[keep], values[keep], ok[keep]
        if len(times) < 2:
            raise ConfigError(f"{p}: the first {days:g} days of the trace hold fewer than two rows")
    span = (times[-1] - times[0]) / 86400
    if span > MAX_TRACE_DAYS:
        first, last = (datetime.fromtimestamp(t, UTC).date().isoformat() for t in (times[0], times[-1]))
        raise ConfigError(
            f"{p}: the trace spans {span:,.0f} days ({first} to {last}); a backtest replays at most "
            f"{MAX_TRACE_DAYS} days of minutes (use --days, or cut the file)"
        )
    step = float(np.median(np.diff(times)))
    if step <= 0:
        raise ConfigError(f"{p}: timestamps must increase")
    ok &= np.isfinite(values)
    start = times[0] - times[0] % MINUTE if step < MINUTE else times[0]
    if math.isclose(step, MINUTE) or step < MINUTE:
        n = int((times[-1] - start) // MINUTE) + 1
        idx = ((times - start) // MINUTE).astype(int)
        per = np.zeros(n)
        seen = np.zeros(n, dtype=bool)
        bad = np.zeros(n, dtype=bool)
        np.add.at(per, idx[np.isfinite(values)], values[np.isfinite(values)])
        seen[idx[np.isfinite(values)]] = True
        bad[idx[~ok]] = True
        minute_values = np.where(seen, per, np.nan)
        minute_ok = seen & ~bad
    else:
        n = int((times[-1] + step - start) // MINUTE)
        rate = values / (step / MINUTE)
        mids = times + step / 2
        grid = start + MINUTE * np.arange(n) + MINUTE / 2
        finite = np.isfinite(rate)
        minute_values = np.interp(grid, mids[finite], rate[finite])
        row = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(times) - 1)
        minute_ok = ok[row] & finite[row]
        minute_values = np.where(finite[row], minute_values, np.nan)
    minute_values = minute_values * scale
    if noise == "poisson":
        rng = np.random.default_rng(seed)
        finite = np.isfinite(minute_values)
        drawn = rng.poisson(np.where(finite, np.maximum(minute_values, 0.0), 0.0)).astype(float)
        minute_values = np.where(finite, drawn, np.nan)
    elif noise != "none":
        raise ConfigError(f"noise must be 'none' or 'poisson', not {noise!r}")
    name = p.name if path is not None else f"{p.name} (shipped NASA-HTTP trace)"
    return DemandTrace(name, datetime.fromtimestamp(start, UTC), minute_values, minute_ok)


def synthetic_trace(
    days: float = 14,
    *,
    mean: float = 40.0,
    amplitude: float = 0.6,
    burst_every: float = 0.5,
    requests_per_visit: float = 3.0,
    seed: int = 0,
    start: datetime = datetime(2026, 1, 5, tzinfo=UTC),
) -> DemandTrace:
    """A reproducible web-like test trace, in requests per minute.

    Visits arrive as a Poisson process whose rate follows a daily cycle (trough at 04:00, peak at
    16:00, +-`amplitude`), runs at 60 % on weekends and jumps x2-x4 for 10-60 minutes in flash crowds
    (about one every `burst_every` days); each visit makes a geometric number of requests with mean
    `requests_per_visit` (a page and its images), so the per-minute variance is
    (2 * requests_per_visit - 1) times the mean: 5 by default, NASA-HTTP's is about 6. With
    `requests_per_visit=1` the counts are plain Poisson."""
    rng = np.random.default_rng(seed)
    n = int(days * 1440)
    minutes = np.arange(n)
    hour = (minutes % 1440) / 60
    daily = 1 + amplitude * np.sin(2 * np.pi * (hour - 10) / 24)
    weekday = ((start.weekday() + minutes // 1440) % 7) < 5
    rate = mean * daily * np.where(weekday, 1.0, 0.6)
    for _ in range(rng.poisson(days / burst_every)):
        at, length = int(rng.integers(0, n)), int(rng.integers(10, 60))
        rate[at : at + length] *= rng.uniform(2, 4)
    visits = rng.poisson(rate / requests_per_visit)
    p = 1.0 / requests_per_visit
    extra = rng.negative_binomial(np.maximum(visits, 1), p) if p < 1 else np.zeros(n, dtype=int)
    values = np.where(visits > 0, visits + extra, 0).astype(float)
    return DemandTrace(f"synthetic({days:g}d, seed {seed})", start, values, np.ones(n, dtype=bool))
