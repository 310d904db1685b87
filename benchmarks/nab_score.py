"""NAB v1.1 scorer, written from the rules in ``nab-dev/SCORING.md``.

Why a scorer of our own: the anomaly benchmark must run in seconds, on a clean machine, inside one
process that also runs our detector, and it must report the score both at the optimal threshold
(NAB's in-sample number, comparable with the leaderboard) and at the fixed threshold the daemon
really uses. It is checked against the published per-row outputs of two NAB detectors
(``fixtures/``), whose subset scores are known.

How it scores (see SCORING.md for the full statement):

- each row gets a sweep score ``A(i)`` from its position relative to the labelled windows (scaled
  sigmoid, earlier in a window is better, just after a window is a cheaper false positive);
- rows in the probationary period (first 15 % of a file, at most 750 rows) are dropped;
- a window contributes the best ``A`` of its detections, or ``-A_FN`` when it has none; every
  detection outside the windows adds its (negative) ``A``;
- the optimal threshold is searched over every distinct score of the pooled corpus (plus 1.1, no
  detections) in one vectorized pass: rows sorted by descending score, false-positive penalties as a
  cumulative sum, and each window's improvement recorded only where its running best rises. That is
  O(n log n) instead of re-scoring the corpus once per candidate threshold.

Usage: ``python benchmarks/nab_score.py RESULTS.csv[.gz] [--data-dir DIR] [--threshold T]`` where
RESULTS has columns ``file,timestamp,anomaly_score``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "PROFILES",
    "CorpusScore",
    "FileReport",
    "FileRows",
    "load_corpus",
    "load_results",
    "load_windows",
    "normalize",
    "optimize_threshold",
    "parse_timestamps",
    "per_file",
    "probation_length",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_corpus",
    "sweep_scores",
]

# (A_TP, A_FN, A_FP) per profile, as in config/profiles.json. tnWeight is unused by NAB.
PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}

NO_DETECTION_THRESHOLD = 1.1
PROBATION_PERCENT = 0.15


def default_data_dir() -> Path:
    """``$EMPIRE_SHARED_DATA/nab-dev``, else ``../shared/data/nab-dev`` next to the repository."""
    base = os.environ.get("EMPIRE_SHARED_DATA")
    if base:
        return Path(base) / "nab-dev"
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nab-dev"


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """NAB's ``2 / (1 + exp(5 y)) - 1``, and exactly -1 beyond y = 3."""
    y = np.asarray(y, dtype=float)
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, s)


def probation_length(n_rows: int) -> int:
    """Rows ``i < P`` are not scored: ``min(floor(0.15 N), 0.15 * 5000)``."""
    return int(min(math.floor(PROBATION_PERCENT * n_rows), PROBATION_PERCENT * 5000))


def parse_timestamps(values: Iterable[str]) -> np.ndarray:
    """ISO-like timestamp strings (space or ``T`` separator) to ``datetime64[us]``."""
    return np.array([v.strip().replace(" ", "T") for v in values], dtype="datetime64[us]")


@dataclass(frozen=True)
class FileRows:
    """The per-row sweep data of one file: ``A(i)`` and the window id of each scored row.

    ``window`` is -1 outside windows, else an id unique within the file; rows in the probationary
    period are already removed.
    """

    sweep: np.ndarray
    window: np.ndarray
    n_windows: int


def window_bounds(timestamps: np.ndarray, windows: Sequence[Sequence[str]]) -> list[tuple[int, int]]:
    """Row index bounds ``(L, R)``, inclusive, of each window; windows with no rows are dropped."""
    bounds = []
    for start, end in windows:
        lo = int(np.searchsorted(timestamps, parse_timestamps([start])[0], side="left"))
        hi = int(np.searchsorted(timestamps, parse_timestamps([end])[0], side="right")) - 1
        if hi >= lo:
            bounds.append((lo, hi))
    return bounds


def sweep_scores(
    timestamps: np.ndarray, windows: Sequence[Sequence[str]], weights: tuple[float, float, float]
) -> FileRows:
    """Sweep score ``A(i)`` of every row of one file (probation removed) under a cost profile."""
    a_tp, _a_fn, a_fp = weights
    n = len(timestamps)
    idx = np.arange(n)
    sweep = np.full(n, -a_fp, dtype=float)
    window = np.full(n, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(-1.0))
    bounds = window_bounds(timestamps, windows)
    for w, (lo, hi) in enumerate(bounds):
        width = hi - lo + 1
        inside = idx[lo : hi + 1]
        sweep[lo : hi + 1] = a_tp * scaled_sigmoid(-(hi - inside + 1) / width) / max_tp
        window[lo : hi + 1] = w
        # Rows after this window (up to the next one) are false positives scaled by distance.
        nxt = bounds[w + 1][0] if w + 1 < len(bounds) else n
        after = idx[hi + 1 : nxt]
        if after.size:
            denom = float(width - 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.abs(hi - after) / denom if denom > 0 else np.full(after.size, np.inf)
            sweep[hi + 1 : nxt] = a_fp * scaled_sigmoid(y)
    p = probation_length(n)
    kept_windows = np.unique(window[p:][window[p:] >= 0])
    return FileRows(sweep=sweep[p:], window=window[p:], n_windows=int(kept_windows.size))


@dataclass(frozen=True)
class CorpusScore:
    """A corpus score under one profile at one threshold."""

    profile: str
    threshold: float
    raw: float
    normalized: float
    tp: int
    fp: int
    fn: int


def normalize(raw: float, n_windows: int, weights: tuple[float, float, float]) -> float:
    """``100 (S - S_null) / (S_perfect - S_null)``; the null detector's best is no detection."""
    a_tp, a_fn, _ = weights
    perfect = n_windows * a_tp
    null = -n_windows * a_fn
    if perfect == null:
        return float("nan")  # no windows: only the raw score means something
    return 100.0 * (raw - null) / (perfect - null)


def _pool(scores: Sequence[np.ndarray], rows: Sequence[FileRows]) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Concatenate files, giving windows corpus-unique ids; drop probation rows from the scores."""
    pooled_scores, pooled_sweep, pooled_window = [], [], []
    offset = 0
    for s, r in zip(scores, rows, strict=True):
        s = np.asarray(s, dtype=float)
        s = s[s.size - r.sweep.size :]
        pooled_scores.append(s)
        pooled_sweep.append(r.sweep)
        # Window ids within a file are contiguous from 0 among the unprobated windows only when the
        # first window is not in probation; remap to dense ids anyway.
        w = r.window.copy()
        inside = w >= 0
        if inside.any():
            _, dense = np.unique(w[inside], return_inverse=True)
            w[inside] = dense + offset
        offset += r.n_windows
        pooled_window.append(w)
    return np.concatenate(pooled_scores), np.concatenate(pooled_sweep), np.concatenate(pooled_window), offset


def optimize_threshold(
    scores: Sequence[np.ndarray], rows: Sequence[FileRows], weights: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Raw corpus score at every candidate threshold, vectorized.

    Returns ``(thresholds, raw)`` in descending threshold order, starting with 1.1 (no detections)
    followed by every distinct score; ``raw[k]`` counts the rows with ``score >= thresholds[k]``.
    """
    _a_tp, a_fn, _a_fp = weights
    s, a, w, n_windows = _pool(scores, rows)
    order = np.argsort(-s, kind="stable")
    s, a, w = s[order], a[order], w[order]
    delta = np.where(w < 0, a, 0.0)
    in_win = np.flatnonzero(w >= 0)
    if in_win.size:
        # Running best A per window along the descending-score order: sort window rows by window id
        # (stable keeps score order), offset each group above the previous so one accumulate works.
        by_win = in_win[np.argsort(w[in_win], kind="stable")]
        gid = w[by_win]
        span = 4.0 * (abs(a_fn) + np.abs(a).max() + 1.0)
        best = np.maximum.accumulate(a[by_win] + gid * span) - gid * span
        first = np.ones(by_win.size, dtype=bool)
        first[1:] = gid[1:] != gid[:-1]
        prev = np.where(first, -a_fn, np.concatenate(([0.0], best[:-1])))
        delta[by_win] = best - prev
    total = -a_fn * n_windows + np.cumsum(delta)
    # The score at threshold s[k] includes all rows with the same score: take the last of each run.
    last = np.ones(s.size, dtype=bool)
    last[:-1] = s[:-1] != s[1:]
    thresholds = np.concatenate(([NO_DETECTION_THRESHOLD], s[last]))
    raw = np.concatenate(([-a_fn * n_windows], total[last]))
    return thresholds, raw


def score_at_threshold(
    scores: Sequence[np.ndarray],
    rows: Sequence[FileRows],
    weights: tuple[float, float, float],
    threshold: float,
) -> tuple[float, int, int, int]:
    """Raw corpus score with detections ``score >= threshold``; also (tp, fp, fn) window/row counts."""
    _a_tp, a_fn, _ = weights
    s, a, w, n_windows = _pool(scores, rows)
    det = s >= threshold
    fp_mask = det & (w < 0)
    raw = float(a[fp_mask].sum())
    best = np.full(n_windows, -np.inf)
    hit = det & (w >= 0)
    np.maximum.at(best, w[hit], a[hit])
    found = np.isfinite(best)
    raw += float(best[found].sum()) - a_fn * int((~found).sum())
    return raw, int(found.sum()), int(fp_mask.sum()), int((~found).sum())


def score_corpus(
    scores: Mapping[str, np.ndarray],
    timestamps: Mapping[str, np.ndarray],
    windows: Mapping[str, Sequence[Sequence[str]]],
    profile: str = "standard",
    threshold: float | None = None,
) -> CorpusScore:
    """Score a detector on a corpus under ``profile``; ``threshold=None`` picks the optimal one."""
    weights = PROFILES[profile]
    names = sorted(scores)
    rows = [sweep_scores(timestamps[n], windows.get(n, []), weights) for n in names]
    score_list = [np.asarray(scores[n], dtype=float) for n in names]
    for n, s in zip(names, score_list, strict=True):
        if s.shape != timestamps[n].shape:
            raise ValueError(f"{n}: {s.size} scores for {timestamps[n].size} rows")
    n_windows = sum(r.n_windows for r in rows)
    if threshold is None:
        thresholds, raws = optimize_threshold(score_list, rows, weights)
        k = int(np.argmax(raws))  # first maximum: the highest threshold among ties, as NAB's max()
        threshold = float(thresholds[k])
    raw, tp, fp, fn = score_at_threshold(score_list, rows, weights, threshold)
    return CorpusScore(
        profile=profile,
        threshold=threshold,
        raw=raw,
        normalized=normalize(raw, n_windows, weights),
        tp=tp,
        fp=fp,
        fn=fn,
    )


@dataclass(frozen=True)
class FileReport:
    """One file's share of a corpus score at one threshold (probation rows excluded).

    ``windows`` has one entry per scored window: ``None`` when missed, else
    ``(offset, A)``: how far into the window (0 = its first row, 1 = its last) the earliest
    detection is, and the sweep score it earns.
    """

    file: str
    raw: float
    fp: int
    fp_cost: float
    windows: list[tuple[float, float] | None]

    @property
    def tp(self) -> int:
        return sum(w is not None for w in self.windows)


def per_file(
    scores: Mapping[str, np.ndarray],
    timestamps: Mapping[str, np.ndarray],
    windows: Mapping[str, Sequence[Sequence[str]]],
    threshold: float,
    profile: str = "standard",
) -> list[FileReport]:
    """Where a corpus score comes from: per file, windows found (and how early) and false positives."""
    weights = PROFILES[profile]
    _a_tp, a_fn, _a_fp = weights
    out = []
    for name in sorted(scores):
        rows = sweep_scores(timestamps[name], windows.get(name, []), weights)
        s = np.asarray(scores[name], dtype=float)
        s = s[s.size - rows.sweep.size :]
        det = s >= threshold
        fp = det & (rows.window < 0)
        raw = float(rows.sweep[fp].sum())
        found: list[tuple[float, float] | None] = []
        for w in np.unique(rows.window[rows.window >= 0]):
            inside = np.flatnonzero(rows.window == w)
            hits = inside[det[inside]]
            if hits.size:
                a = float(rows.sweep[hits[0]])
                found.append(((hits[0] - inside[0]) / inside.size, a))
                raw += a
            else:
                found.append(None)
                raw -= a_fn
        out.append(FileReport(name, raw, int(fp.sum()), float(rows.sweep[fp].sum()), found))
    return out


def load_windows(data_dir: Path) -> dict[str, list[list[str]]]:
    """``labels/combined_windows.json``: file -> list of inclusive ``[start, end]`` timestamps."""
    with open(data_dir / "labels" / "combined_windows.json", encoding="utf-8") as f:
        return json.load(f)


def load_corpus(data_dir: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """Every ``data/<category>/<file>.csv``: name -> (timestamp strings, values)."""
    corpus = {}
    for path in sorted((data_dir / "data").glob("*/*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            next(reader)
            ts, vals = [], []
            for row in reader:
                ts.append(row[0])
                vals.append(float(row[1]))
        corpus[f"{path.parent.name}/{path.name}"] = (ts, np.array(vals))
    return corpus


def load_results(path: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """A detector's results file (``file,timestamp,anomaly_score``, optionally gzipped)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    out: dict[str, tuple[list[str], list[float]]] = {}
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            ts, sc = out.setdefault(row["file"], ([], []))
            ts.append(row["timestamp"])
            sc.append(float(row["anomaly_score"]))
    return {k: (ts, np.array(sc)) for k, (ts, sc) in out.items()}


def score_all_profiles(
    scores: Mapping[str, np.ndarray],
    timestamps: Mapping[str, np.ndarray],
    windows: Mapping[str, Sequence[Sequence[str]]],
    threshold: float | None = None,
) -> dict[str, CorpusScore]:
    """``score_corpus`` for each profile."""
    return {p: score_corpus(scores, timestamps, windows, p, threshold) for p in PROFILES}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="CSV with columns file,timestamp,anomaly_score")
    parser.add_argument("--data-dir", type=Path, default=None, help="nab-dev directory")
    parser.add_argument("--threshold", type=float, default=None, help="fixed threshold (default: optimal)")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    windows = load_windows(data_dir)
    results = load_results(args.results)
    scores = {k: v[1] for k, v in results.items()}
    stamps = {k: parse_timestamps(v[0]) for k, v in results.items()}
    out = {}
    for profile, cs in score_all_profiles(scores, stamps, windows, args.threshold).items():
        out[profile] = {"score": round(cs.normalized, 2), "threshold": cs.threshold, "raw": round(cs.raw, 4)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
