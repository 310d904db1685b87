"""Causal building blocks of the anomaly detector, one small stateful stream each.

Why streams over buffers: the detector must give the same score whether a series arrives as one
20,000-row file or one point at a time from the daemon's loop. Every block here keeps only the
bounded history it needs and transforms a block of new points using that history plus the points
before them in the block, so ``process(a + b) == process(a) + process(b)``. A block of one point
runs exactly the same code, which is what makes the online path identical to the batch one.

Why re-estimate periodically: medians, quantiles and models of the history are recomputed every
``every`` points (at fixed stream positions), not at every point, as Numenta's likelihood does.
A summary a few points old loses nothing measurable, and it makes batch scoring fast (one
summary per segment, then vectorized arithmetic over the segment).

Nothing here reads a clock or does I/O: timestamps come in as float seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["Periodic", "RobustZ", "SeasonalResidual", "TailCalibrator", "WindowOutlierModel"]

# Robust z-scores are capped so that downstream arithmetic never meets inf.
Z_CAP = 1e6


def _sorted_quantile(ordered: np.ndarray, q: float) -> float:
    """``np.quantile(ordered, q)`` (linear interpolation) of an already sorted array, fast."""
    pos = q * (ordered.size - 1)
    lo = int(pos)
    hi = min(lo + 1, ordered.size - 1)
    return float(ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo]))


class Periodic:
    """The last ``width`` inputs, summarized every ``every`` points by ``summarize``.

    ``segments(x)`` feeds a block and returns ``(lo, hi, summary)`` slices of it: the summary in
    force for those points, computed from inputs strictly before the segment (``None`` until
    there is any history).
    """

    def __init__(self, width: int, every: int) -> None:
        self.width = int(width)
        self.every = max(1, int(every))
        self.buf = np.empty(0)
        self.seen = 0
        self.summary: Any = None

    def summarize(self, history: np.ndarray) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def segments(self, x: np.ndarray) -> list[tuple[int, int, Any]]:
        joined = np.concatenate([self.buf, np.asarray(x, dtype=float)])
        start = self.buf.size
        pos0 = self.seen - start  # stream position of joined[0]
        out = []
        i = start
        while i < joined.size:
            phase = (pos0 + i) % self.every
            if phase == 0:
                h = joined[max(0, i - self.width) : i]
                self.summary = self.summarize(h) if h.size else None
            end = min(joined.size, i + self.every - phase)
            out.append((i - start, end - start, self.summary))
            i = end
        self.seen += x.size
        self.buf = joined[-self.width :].copy()
        return out


class RobustZ(Periodic):
    """``|x - median| / scale`` of each value against the ``width`` values before its segment.

    The scale is 1.4826 MAD, or 1.2533 x the mean absolute deviation when the MAD is 0: mostly
    constant metrics (idle queues, error counts) have a MAD of 0 but are not constant, and a spike
    on them should score high, not infinite. Until ``min_history`` values are seen z is 0.
    """

    def __init__(self, width: int, every: int, min_history: int) -> None:
        super().__init__(width, every)
        self.min_history = int(min_history)

    def summarize(self, h: np.ndarray) -> tuple[float, float] | None:
        if h.size < self.min_history:
            return None
        med = float(np.median(h))
        dev = np.abs(h - med)
        mad = 1.4826 * float(np.median(dev))
        scale = mad if mad > 0 else 1.2533 * float(dev.mean())
        return med, max(scale, 1e-9 * (1.0 + abs(med)))

    def process(self, x: np.ndarray) -> np.ndarray:
        z = np.zeros(x.size)
        for lo, hi, summary in self.segments(x):
            if summary is not None:
                med, scale = summary
                z[lo:hi] = np.abs(x[lo:hi] - med) / scale
        return np.minimum(z, Z_CAP)


class SeasonalResidual:
    """Residual of each value from the same time one, two and three seasons earlier (median).

    Looking the reference up by timestamp, not by row offset, keeps the phase right across gaps
    and irregular sampling: a reference counts when its timestamp is within half a sampling step
    of ``t - k * period``. Values with no reference yet give NaN.
    """

    def __init__(self, period: float, n_seasons: int = 3) -> None:
        self.period = float(period)
        self.n_seasons = int(n_seasons)
        self.t = np.empty(0)
        self.x = np.empty(0)
        self.step: float | None = None

    def process(self, t: np.ndarray, x: np.ndarray) -> np.ndarray:
        jt = np.concatenate([self.t, t])
        jx = np.concatenate([self.x, x])
        start = self.t.size
        if self.step is None and jt.size >= 16:
            d = np.diff(jt[:16])
            d = d[d > 0]
            self.step = float(np.median(d)) if d.size else None
        refs = np.full((x.size, self.n_seasons), np.nan)
        if self.step is not None:
            tol = 0.5 * self.step
            for k in range(1, self.n_seasons + 1):
                want = t - k * self.period
                j = np.clip(np.searchsorted(jt, want), 1, max(jt.size - 1, 1))
                left, right = j - 1, np.minimum(j, jt.size - 1)
                pick = np.where(np.abs(jt[left] - want) <= np.abs(jt[right] - want), left, right)
                ok = (np.abs(jt[pick] - want) <= tol) & (pick < start + np.arange(x.size))
                refs[:, k - 1] = np.where(ok, jx[pick], np.nan)
        have = np.isfinite(refs).any(axis=1)
        expected = np.full(x.size, np.nan)
        if have.any():
            expected[have] = np.nanmedian(refs[have], axis=1)
        keep_from = jt.searchsorted(jt[-1] - self.n_seasons * self.period - (self.step or 0.0)) if jt.size else 0
        self.t, self.x = jt[keep_from:].copy(), jx[keep_from:].copy()
        return x - expected


class TailCalibrator(Periodic):
    """P-value of each strangeness value against the ``width`` values before its segment.

    Below the ``quantile`` of the history it is the conformal rank p-value
    ``(1 + #{past >= s}) / (1 + #past)``; above it, an exponential tail fitted to the exceedances
    (peaks over threshold, as in SPOT, Siffer et al. 2017): ``(1 - quantile) exp(-(s - u) / beta)``.
    Ranks alone cannot say that a value ten times the largest one seen is more surprising than
    one just above it; the fitted tail can, but it may not claim a value rarer than its observed
    frequency. A constant stream gives p = 1.
    """

    def __init__(
        self, width: int, every: int, quantile: float = 0.9, min_history: int = 1, min_beta: float = 0.0
    ) -> None:
        super().__init__(width, every)
        self.quantile = float(quantile)
        self.min_history = int(min_history)
        self.min_beta = float(min_beta)

    def summarize(self, h: np.ndarray) -> tuple[np.ndarray, float, float] | None:
        if h.size < self.min_history:
            return None
        ordered = np.sort(h)
        u = _sorted_quantile(ordered, self.quantile)
        excess = ordered[ordered > u] - u
        beta = float(excess.mean()) if excess.size else 0.0
        return ordered, u, max(beta, self.min_beta, 1e-9 * (1.0 + abs(u)))

    def process(self, s: np.ndarray) -> np.ndarray:
        p = np.ones(s.size)
        for lo, hi, summary in self.segments(s):
            if summary is None:
                continue
            ordered, u, beta = summary
            c = s[lo:hi]
            n = ordered.size
            count_ge = n - np.searchsorted(ordered, c, side="left")
            rank_p = (1.0 + count_ge) / (1.0 + n)
            tail_p = (1.0 - self.quantile) * np.exp(-np.maximum(c - u, 0.0) / beta)
            tail_p = np.maximum(tail_p, count_ge / (1.0 + n))
            p[lo:hi] = np.where(c > u, np.minimum(rank_p, tail_p), rank_p)
        return p


class WindowOutlierModel:
    """Strangeness of the last ``lags`` values as a shape, from a ``LocalOutlierFactor``.

    The forest is refit every ``refit_every`` points (at fixed stream positions, so batch and
    online agree) on the ``train_size`` most recent windows that ended *before* the refit point,
    and scores every window until the next refit: causal, and one vectorized call per segment in
    batch. It sees patterns the per-value statistics miss: a spike pair, a stalled oscillation,
    a level that is normal on its own but not after what preceded it. Constant training data
    (every window identical) gives no model: strangeness 0 until the data varies.
    """

    def __init__(self, lags: int, refit_every: int, train_size: int, min_train: int, neighbors: int = 20) -> None:
        self.lags = int(lags)
        self.refit_every = int(refit_every)
        self.train_size = int(train_size)
        self.min_train = int(min_train)
        self.neighbors = int(neighbors)
        self.center = 0.0
        self.scale = 1.0
        self.buf = np.empty(0)
        self.seen = 0
        self.model = None

    def _fit(self, joined: np.ndarray, end: int) -> None:
        from sklearn.neighbors import LocalOutlierFactor

        hist = joined[max(0, end - self.train_size - self.lags + 1) : end]
        if hist.size < self.min_train + self.lags - 1 or np.ptp(hist) == 0:
            self.model = None
            return
        windows = sliding_window_view(hist, self.lags)
        # Scale each refit's training windows by their own robust spread so that the neighbour
        # distances mean the same on any metric; LOF (novelty mode) scores unseen windows.
        self.center = float(np.median(hist))
        self.scale = max(float(np.median(np.abs(hist - self.center))) * 1.4826, 1e-9 * (1 + abs(self.center)))
        feats = (windows - self.center) / self.scale
        self.model = LocalOutlierFactor(n_neighbors=self.neighbors, novelty=True).fit(feats)

    def process(self, x: np.ndarray) -> np.ndarray:
        if x.size == 0:
            return np.empty(0)
        joined = np.concatenate([self.buf, x])
        start = self.buf.size
        out = np.zeros(x.size)
        pos0 = self.seen - start  # stream position of joined[0]
        i = start
        while i < joined.size:
            pos = pos0 + i
            if pos % self.refit_every == 0:
                self._fit(joined, i)
            seg_end = min(joined.size, i + self.refit_every - pos % self.refit_every)
            lo = max(i, self.lags - 1)
            if self.model is not None and lo < seg_end:
                windows = sliding_window_view(joined[lo - self.lags + 1 : seg_end], self.lags)
                feats = (windows - self.center) / self.scale
                # LOF is about 1 for inliers: the excess over 1 is 0 when there is no model, too.
                out[lo - start : seg_end - start] = np.maximum(-self.model.score_samples(feats) - 1.0, 0.0)
            i = seg_end
        self.seen += x.size
        self.buf = joined[-(self.train_size + self.lags) :].copy()
        return out


class RollingMean:
    """Mean of the last ``k`` inputs (fewer at the start), block-size independent."""

    def __init__(self, k: int) -> None:
        self.k = max(1, int(k))
        self.tail = np.empty(0)
        self.seen = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if x.size == 0:
            return np.empty(0)
        k = self.k
        joined = np.concatenate([np.zeros(k - 1 - self.tail.size), self.tail, x])
        sums = sliding_window_view(joined, k).sum(axis=1)
        count = np.minimum(self.seen + np.arange(x.size) + 1, k)
        self.seen += x.size
        self.tail = joined[joined.size - (k - 1) :].copy() if k > 1 else np.empty(0)
        return sums / count


class Novelty:
    """Distance of each value to the nearest value in the last ``width`` values, in robust units.

    A value inside the range the metric has already visited is at distance ~0; a level never
    seen before (a new record low, a band of values the metric never took) is far from all of
    them. The unit is the spread (IQR / 1.349) of the history, so the distance means the same on
    any metric. The history is a sorted array updated every ``every`` points (insert the new
    values, drop the ones older than ``width``), so a long memory stays cheap.
    """

    def __init__(self, width: int, every: int, min_history: int = 30) -> None:
        self.width = int(width)
        self.every = max(1, int(every))
        self.min_history = int(min_history)
        self.fifo = np.empty(0)  # values in arrival order, the last ``width`` plus pending ones
        self.ordered = np.empty(0)  # sorted values up to the last update point
        self.pending = 0  # values in ``fifo`` not yet in ``ordered``
        self.seen = 0

    def _update(self) -> None:
        new = self.fifo[self.fifo.size - self.pending :] if self.pending else np.empty(0)
        self.ordered = np.insert(self.ordered, np.searchsorted(self.ordered, np.sort(new)), np.sort(new))
        self.pending = 0
        excess = self.fifo.size - self.width
        if excess > 0:
            for old in (self.fifo[:excess],):
                idx = np.searchsorted(self.ordered, np.sort(old))
                self.ordered = np.delete(self.ordered, idx)
            self.fifo = self.fifo[excess:].copy()

    def process(self, x: np.ndarray) -> np.ndarray:
        d = np.zeros(x.size)
        i = 0
        while i < x.size:
            if self.seen % self.every == 0 and self.pending:
                self._update()
            end = min(x.size, i + self.every - self.seen % self.every)
            c = x[i:end]
            o = self.ordered
            if o.size >= self.min_history:
                q1, q3 = o[int(0.25 * (o.size - 1))], o[int(0.75 * (o.size - 1))]
                scale = (q3 - q1) / 1.349
                if scale <= 0:
                    scale = 1.2533 * float(np.abs(o - o[o.size // 2]).mean())
                scale = max(float(scale), 1e-9 * (1.0 + abs(float(o[-1]))))
                j = np.clip(np.searchsorted(o, c), 1, o.size - 1)
                near = np.minimum(np.abs(c - o[j - 1]), np.abs(c - o[j]))
                near = np.where(c <= o[0], o[0] - c, np.where(c >= o[-1], c - o[-1], near))
                d[i:end] = near / scale
            self.fifo = np.concatenate([self.fifo, c])
            self.pending += c.size
            self.seen += c.size
            i = end
        return np.minimum(d, Z_CAP)


class Cusum:
    """One-sided CUSUM ``S_t = max(0, S_{t-1} + e_t)``, vectorized as ``C_t - min(0, min C_s)``."""

    def __init__(self) -> None:
        self.c = 0.0
        self.low = 0.0

    def process(self, e: np.ndarray) -> np.ndarray:
        if e.size == 0:
            return np.empty(0)
        c = self.c + np.cumsum(e)
        low = np.minimum(np.minimum.accumulate(c), self.low)
        self.c, self.low = float(c[-1]), float(low[-1])
        return c - low


class Evidence:
    """One strangeness series to two p-values per point: the point itself and its recent run.

    ``process(s, ok)`` takes strangeness values (larger is stranger) and a mask of the points
    where the series is defined (a seasonal residual needs a reference); undefined points get
    p = 1 and are not learned from, so a series that starts late is not judged against zeros.
    The point p-value catches spikes; a CUSUM of its surprisal ``-ln p - drift`` catches a
    moderate deviation that lasts (a holiday that looks like a Sunday, a slow drift to a new
    level), and is itself calibrated against its own history.
    """

    def __init__(self, width: int, every: int, drift: float, min_history: int, unit: float, run_unit: float) -> None:
        self.point = TailCalibrator(width, every, min_history=min_history, min_beta=unit)
        self.drift = float(drift)
        self.cusum = Cusum() if drift > 0 else None
        self.run_cal = TailCalibrator(width, every, min_history=min_history, min_beta=run_unit) if drift > 0 else None

    @property
    def n_out(self) -> int:
        return 2 if self.cusum is not None else 1

    def process(self, s: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
        out = np.ones((s.size, self.n_out))
        if ok is None:
            ok = np.ones(s.size, dtype=bool)
        v = np.minimum(s[ok], 50.0)
        pp = self.point.process(v)
        out[ok, 0] = pp
        if self.cusum is not None and self.run_cal is not None:
            out[ok, 1] = self.run_cal.process(self.cusum.process(-np.log(np.maximum(pp, 1e-12)) - self.drift))
        return out
