"""Causal building blocks of the anomaly detector, one small stateful stream each.

Why streams over buffers: the detector must give the same score whether a series arrives as one
20,000-row file or one point at a time from the daemon's loop. Every block here keeps only the
bounded history it needs (its *buffer*) and transforms a block of new points using that history
plus the points before them in the block, so ``process(a + b) == process(a) + process(b)``. Inside
a block the work is vectorized with sliding windows, which is what makes batch scoring fast; a
block of one point runs exactly the same code, which is what makes the online path identical.

Nothing here reads a clock or does I/O: timestamps come in as float seconds.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["RobustZ", "SeasonalResidual", "TailCalibrator", "history_windows"]

# Rows per vectorized chunk: bounds the memory of a (rows x window) sliding view.
_CHUNK = 2048
# Robust z-scores are capped so that downstream arithmetic never meets inf.
Z_CAP = 1e6


def history_windows(buf: np.ndarray, start: int, width: int, fn, n_out: int = 1) -> np.ndarray:
    """``fn(history, current)`` for each position ``p >= start`` of ``buf``.

    ``history`` holds the (up to) ``width`` values strictly before ``p``, one row per position, and
    ``current`` the values at those positions; ``fn`` returns ``n_out`` columns per row. Positions
    with a shorter history (the start of a stream) are done row by row, the rest in chunks.
    Positions with no history at all get NaN.
    """
    n = buf.size
    out = np.full((n - start, n_out), np.nan)
    full_from = max(start, width)
    for p in range(max(start, 1), min(full_from, n)):
        out[p - start] = np.asarray(fn(buf[None, :p], buf[p : p + 1])).reshape(-1)
    for lo in range(full_from, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        view = sliding_window_view(buf[lo - width : hi - 1], width)
        out[lo - start : hi - start] = np.asarray(fn(view, buf[lo:hi])).reshape(hi - lo, n_out)
    return out


def _robust_center_scale(h: np.ndarray) -> np.ndarray:
    """Median and a scale per row: 1.4826 MAD, or 1.2533 x mean absolute deviation when MAD is 0.

    The fallback matters for mostly-constant metrics (idle queues, error counts): their MAD is 0
    but they are not constant, and a spike should score high, not infinite.
    """
    med = np.median(h, axis=1)
    dev = np.abs(h - med[:, None])
    mad = 1.4826 * np.median(dev, axis=1)
    mean_dev = 1.2533 * dev.mean(axis=1)
    scale = np.where(mad > 0, mad, mean_dev)
    tiny = 1e-9 * (1.0 + np.abs(med))
    return np.stack([med, np.maximum(scale, tiny)], axis=1)


class _Buffered:
    """A bounded history of past inputs; ``_extend`` returns history + block and its start."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self.buf = np.empty(0, dtype=float)

    def _extend(self, block: np.ndarray) -> tuple[np.ndarray, int]:
        return np.concatenate([self.buf, np.asarray(block, dtype=float)]), self.buf.size

    def _keep(self, joined: np.ndarray) -> None:
        self.buf = joined[-self.capacity :].copy() if self.capacity else joined[:0].copy()


class RobustZ(_Buffered):
    """|x - median| / robust scale of each value against the ``window`` values before it.

    The first ``min_history`` values of a stream have no reliable reference and score 0.
    """

    def __init__(self, window: int, min_history: int) -> None:
        super().__init__(window)
        self.window = int(window)
        self.min_history = int(min_history)
        self.seen = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        if x.size == 0:
            return np.empty(0)
        joined, start = self._extend(x)
        stats = history_windows(joined, start, self.window, lambda h, _c: _robust_center_scale(h), 2)
        z = np.abs(x - stats[:, 0]) / stats[:, 1]
        position = self.seen + np.arange(x.size)
        z = np.where(position < self.min_history, 0.0, np.nan_to_num(z, nan=0.0))
        self.seen += x.size
        self._keep(joined)
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


class TailCalibrator(_Buffered):
    """P-value of each strangeness value against the ``window`` values before it.

    Below the ``quantile`` of the history it is the conformal rank p-value
    ``(1 + #{past >= s}) / (1 + #past)``; above it, an exponential tail fitted to the exceedances
    (peaks over threshold, as in SPOT, Siffer et al. 2017): ``(1 - quantile) exp(-(s - u) / beta)``.
    Ranks alone cannot say that a value ten times the largest one seen is more surprising than
    one just above it; the fitted tail can, while ranks keep ordinary values honest whatever the
    distribution. A constant stream gives p = 1.
    """

    def __init__(self, window: int, quantile: float = 0.9) -> None:
        super().__init__(window)
        self.window = int(window)
        self.quantile = float(quantile)

    def _pvalue(self, h: np.ndarray, c: np.ndarray) -> np.ndarray:
        n = h.shape[1]
        count_ge = (h >= c[:, None]).sum(axis=1)
        rank_p = (1.0 + count_ge) / (1.0 + n)
        u = np.quantile(h, self.quantile, axis=1)
        excess = np.maximum(h - u[:, None], 0.0)
        n_exc = (excess > 0).sum(axis=1)
        beta = np.where(n_exc > 0, excess.sum(axis=1) / np.maximum(n_exc, 1), 0.0)
        beta = np.maximum(beta, 1e-9 * (1.0 + np.abs(u)))
        tail_p = (1.0 - self.quantile) * np.exp(-np.maximum(c - u, 0.0) / beta)
        # The fitted tail extrapolates beyond the largest value seen; within the seen range it may
        # not claim a value rarer than its observed frequency.
        tail_p = np.maximum(tail_p, count_ge / (1.0 + n))
        return np.where(c > u, np.minimum(rank_p, tail_p), rank_p)

    def process(self, s: np.ndarray) -> np.ndarray:
        if s.size == 0:
            return np.empty(0)
        joined, start = self._extend(s)
        p = history_windows(joined, start, self.window, self._pvalue)[:, 0]
        self._keep(joined)
        return np.nan_to_num(p, nan=1.0)
