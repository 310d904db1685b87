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

    def __init__(self, width: int, every: int, quantile: float = 0.9) -> None:
        super().__init__(width, every)
        self.quantile = float(quantile)

    def summarize(self, h: np.ndarray) -> tuple[np.ndarray, float, float]:
        ordered = np.sort(h)
        u = float(np.quantile(ordered, self.quantile))
        excess = ordered[ordered > u] - u
        beta = float(excess.mean()) if excess.size else 0.0
        return ordered, u, max(beta, 1e-9 * (1.0 + abs(u)))

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
