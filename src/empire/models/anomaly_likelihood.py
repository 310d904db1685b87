"""Anomaly likelihood: raw scores to a calibrated tail probability, then to a [0, 1] score.

Why: a raw score (how surprising this point looks) is not comparable across metrics or over time:
a noisy metric is surprised all the time. Following Numenta's anomaly likelihood (Ahmad et al.,
"Unsupervised real-time anomaly detection for streaming data", 2017), we model the recent
distribution of the raw score itself: a long-window mean and standard deviation of short-window
averages. A point is anomalous when the short-window average is far in the Gaussian tail of that
distribution, i.e. when the detector is *unusually* surprised for this metric, for several points
or very strongly for one. The tail probability ``q`` becomes a score with
``-log10(q) / 10``: 0.5 means q = 1e-5, 1.0 means q <= 1e-10, so one threshold works everywhere.

The long window excludes the current point (causal, and the anomaly does not mask itself).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.special import ndtr

from empire.models.anomaly_streams import Periodic

__all__ = ["AnomalyLikelihood", "log_tail_score"]

# Tail probabilities below this are saturated: score 1.0.
_MIN_TAIL = 1e-10


def log_tail_score(tail: np.ndarray) -> np.ndarray:
    """Map a tail probability to [0, 1]: ``-log10(q) / 10``, clipped (1e-5 -> 0.5)."""
    tail = np.clip(np.asarray(tail, dtype=float), _MIN_TAIL, 1.0)
    return np.clip(-np.log10(tail) / 10.0, 0.0, 1.0) + 0.0  # + 0.0: no -0.0 in output files


class _MeanStd(Periodic):
    def summarize(self, h: np.ndarray) -> tuple[float, float]:
        return float(h.mean()), float(h.std())


class AnomalyLikelihood:
    """Streaming anomaly likelihood over raw scores in [0, 1].

    ``short_window`` raw scores are averaged; the mean and standard deviation of the previous
    ``long_window`` averages are re-estimated every ``every`` points; until ``learning_period``
    raw scores have been seen the tail is 1. ``min_std`` floors the spread so that a metric that
    was perfectly predictable does not alarm on the first tiny surprise.
    """

    def __init__(
        self, short_window: int, long_window: int, learning_period: int, min_std: float, every: int = 20
    ) -> None:
        self.short_window = int(short_window)
        self.learning_period = int(learning_period)
        self.min_std = float(min_std)
        self.raw = np.empty(0)
        self.seen = 0
        self.stats = _MeanStd(long_window, every)

    def process(self, raw: np.ndarray) -> np.ndarray:
        """Tail probability of each raw score's short-window average (1 = not anomalous)."""
        raw = np.asarray(raw, dtype=float)
        if raw.size == 0:
            return np.empty(0)
        joined = np.concatenate([self.raw, raw])
        # Zero-padded sums divided by the real count: the same arithmetic whatever the block size.
        k = self.short_window
        padded = np.concatenate([np.zeros(k - 1), joined])
        sums = sliding_window_view(padded[self.raw.size :], k).sum(axis=1)
        count = np.minimum(self.seen + np.arange(raw.size) + 1, k)
        avg = sums / count
        tail = np.ones(raw.size)
        for lo, hi, summary in self.stats.segments(avg):
            if summary is not None:
                mean, std = summary
                # Half-normal tail: an average at or below its usual level is no evidence at all
                # (q = 1, score 0), so quiet metrics score 0 rather than a constant offset.
                z = (avg[lo:hi] - mean) / max(std, self.min_std)
                tail[lo:hi] = np.minimum(1.0, 2.0 * ndtr(-np.maximum(z, 0.0)))
        position = self.seen + np.arange(raw.size)
        tail = np.where(position < self.learning_period, 1.0, tail)
        self.seen += raw.size
        self.raw = joined[max(0, joined.size - (k - 1)) :].copy()
        return tail
