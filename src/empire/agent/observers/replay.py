"""`ReplayObserver`: a recorded trace (CSV) played back against the loop's clock.

This is what lets the backtest run weeks of traffic in seconds on a `FakeClock`, and what tests use
to drive the loop through a scripted day without a Prometheus. At `now` each signal reads the
latest row at or before `now`, so its staleness is real (a gap in the trace is a stale signal).

CSV columns (header required): `timestamp,target,signal,value`

* `timestamp`: ISO 8601 (`2026-01-01T00:00:00Z`) or Unix seconds;
* `target`: empty means "every target that has this signal";
* `value`: a number, `NaN`, or empty (a recorded failed scrape: the signal is missing);
* signal `@outage` with value 1 / 0 starts / ends a metric-source outage (observe raises,
  exactly as an unreachable Prometheus would), so fallbacks can be replayed too.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from empire.agent.types import Sample, SampleStatus
from empire.boundedio import MAX_CSV_BYTES, bounded_lines, open_bounded_text
from empire.errors import ConfigError, TemporaryError
from empire.policies.scaling import Target

__all__ = ["OUTAGE", "ReplayObserver", "parse_timestamp"]

OUTAGE = "@outage"


def parse_timestamp(text: str) -> datetime:
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class ReplayObserver:
    source = "replay"  # the `source` label of empire_metric_source_up
    history_by_signal = True
    """`history()` takes `target/signal` instead of PromQL (read by `horizon.service.history_query`)."""

    def __init__(self, rows: Iterable[tuple[datetime, str, str, float | None]]) -> None:
        series: dict[tuple[str, str], list[tuple[datetime, float | None]]] = defaultdict(list)
        for at, target, signal, value in rows:
            series[(target, signal)].append((at, value))
        self._times: dict[tuple[str, str], list[datetime]] = {}
        self._values: dict[tuple[str, str], list[float | None]] = {}
        for key, points in series.items():
            points.sort(key=lambda p: p[0])
            self._times[key] = [p[0] for p in points]
            self._values[key] = [p[1] for p in points]

    @classmethod
    def from_csv(cls, path: str | Path) -> ReplayObserver:
        p = Path(path)
        rows: list[tuple[datetime, str, str, float | None]] = []
        try:
            with open_bounded_text(p, MAX_CSV_BYTES, "trace file") as fh:
                reader = csv.DictReader(bounded_lines(fh, str(p)))
                missing = {"timestamp", "signal", "value"} - set(reader.fieldnames or ())
                if missing:
                    raise ConfigError(
                        f"{p}: trace needs columns timestamp,target,signal,value (missing {sorted(missing)})"
                    )
                for n, row in enumerate(reader, start=2):
                    try:
                        raw = (row.get("value") or "").strip()
                        value = float(raw) if raw else None
                        rows.append((parse_timestamp(row["timestamp"]), (row.get("target") or "").strip(),
                                     row["signal"].strip(), value))  # fmt: skip
                    except (ValueError, AttributeError) as exc:
                        raise ConfigError(f"{p}:{n}: bad trace row: {exc}") from None
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"{p}: cannot read trace: {exc}") from None
        return cls(rows)

    def _latest(self, target: str, signal: str, now: datetime) -> tuple[datetime, float | None] | None:
        for key in ((target, signal), ("", signal)):
            times = self._times.get(key)
            if not times:
                continue
            i = bisect.bisect_right(times, now)
            if i:
                return times[i - 1], self._values[key][i - 1]
        return None

    @property
    def span(self) -> tuple[datetime, datetime] | None:
        """First and last timestamp of the trace."""
        if not self._times:
            return None
        return min(t[0] for t in self._times.values()), max(t[-1] for t in self._times.values())

    async def observe(self, target: Target, now: datetime) -> tuple[Sample, ...]:
        outage = self._latest(target.name, OUTAGE, now)
        if outage is not None and outage[1]:
            raise TemporaryError(f"replayed metric-source outage since {outage[0].isoformat()}")
        samples = []
        for signal in target.signals:
            point = self._latest(target.name, signal.name, now)
            if point is None:
                samples.append(Sample(signal.name, None, None, None, SampleStatus.missing, "no trace data yet"))
                continue
            at, value = point
            staleness = (now - at).total_seconds()
            if value is None:
                samples.append(Sample(signal.name, None, at, staleness, SampleStatus.missing, "recorded failed scrape"))
            elif not math.isfinite(value):
                samples.append(Sample(signal.name, value, at, staleness, SampleStatus.invalid, f"value is {value}"))
            else:
                samples.append(Sample(signal.name, value, at, staleness))
        return tuple(samples)

    async def history(self, query: str, start: datetime, end: datetime, step: float) -> list[tuple[datetime, float]]:
        """`query` is `target/signal` (or a bare signal name); points in [start, end], one per row."""
        target, _, signal = query.rpartition("/")
        key = (target, signal) if (target, signal) in self._times else ("", signal)
        times, values = self._times.get(key, []), self._values.get(key, [])
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end)
        return [(times[i], v) for i in range(lo, hi) if (v := values[i]) is not None and math.isfinite(v)]

    async def aclose(self) -> None:
        return None
