"""Anomaly detection on the 37 NAB development files: one JSON line of NAB scores, CV and speed.

What it measures, all with NAB v1.1's standard profile unless said otherwise:

- ``detector``: ``empire detect``'s code path (``score_series``: ``AnomalyDetector()`` with its
  defaults) at the fixed threshold ``DEFAULT_THRESHOLD`` on ``dev18`` (``nab-dev/``), ``extra19``
  (``nab-extra/``), ``all37`` and per category (three profiles on the pooled sets);
- ``shipped_rule``: the shipped policy's anomaly rule as the daemon runs it: the detector built by
  ``empire.agent.alerting.scoring.rule_detector`` at the rule's threshold, compared with that
  threshold. ``noise_alarms_per_10k``: its alarms on ``artificialNoAnomaly`` (all rows after the
  detector's learning period, probation included), per 10,000 points;
- ``cv``: leave-one-category-out cross-validation (``empire.models.evaluation.leave_one_group_out``)
  over the small parameter grid ``GRID``: for each category the parameters are chosen on the
  other categories (first best, so the defaults win ties) and scored on the one left out.
  ``in_sample`` is the same grid chosen on all 37 files. ``all37`` pools the held-out outputs;
- ``htm``: Numenta HTM's published outputs (the fixtures) scored by the same scorer at 0.5 and at
  its optimal threshold: a control for the scorer and the reference to beat;
- speed: points per CPU second (``time.process_time``, so other load on the machine counts less)
  through ``fit`` (batch, one core) and through ``update()`` (one point at a time, as the daemon
  runs), with a check that the two give the same scores.

Data: ``$EMPIRE_SHARED_DATA/nab-dev`` and ``nab-extra`` (default ``../shared/data/...`` next to the
repository). One file (machine_temperature_system_failure) steps back 55 minutes once (a clock
adjustment at row 10149); it is scored like ``empire detect --unordered keep`` would.

Usage: ``python benchmarks/anomaly.py [--jobs N] [--per-file] [--no-cv]``; ``--per-file`` prints on
stderr each file's windows found (how far into the window the first detection is, 0 = its first
row) and false positives at the fixed threshold. ``--jobs`` (default 2, the machine's cores) runs
files in a process pool; per-file scores are computed once per parameter set and reused.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import nab_score as ns
from empire.agent.alerting.scoring import rule_detector
from empire.cli.detect import score_series
from empire.models.anomaly import DEFAULT_THRESHOLD, AnomalyDetector, to_seconds
from empire.models.evaluation import leave_one_group_out

PROFILE_KEYS = {"standard": "standard", "reward_low_FP_rate": "low_fp", "reward_low_FN_rate": "low_fn"}
ONLINE_FILE = "realKnownCause/ec2_request_latency_system_failure.csv"
SUBSETS = ("nab-dev", "nab-extra")
NOISE = "artificialNoAnomaly"

# The cross-validation grid: the defaults first (they win ties), then one change at a time of the
# knobs that matter most. Small on purpose: a wide grid fitted to 37 files would be tuning.
GRID: tuple[dict[str, Any], ...] = (
    {},
    {"suppress": 150},
    {"suppress": 200},
    {"n_seasons": 1},
    {"n_seasons": 3},
    {"smooth": 288},
    {"score_scale": 9.0},
)


def data_root() -> Path:
    base = os.environ.get("EMPIRE_SHARED_DATA")
    return Path(base) if base else Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class Corpus:
    """The 37 files: values, timestamps (datetime64 and seconds), windows, subset and category."""

    def __init__(self, root: Path) -> None:
        self.values: dict[str, np.ndarray] = {}
        self.stamps: dict[str, np.ndarray] = {}
        self.subset: dict[str, str] = {}
        self.windows: dict[str, list] = {}
        for sub in SUBSETS:
            for name, (ts, vals) in ns.load_corpus(root / sub).items():
                self.values[name], self.stamps[name], self.subset[name] = vals, ns.parse_timestamps(ts), sub
            self.windows.update(ns.load_windows(root / sub))
        self.names = sorted(self.values)
        self.seconds = {n: to_seconds(self.stamps[n]) for n in self.names}

    def category(self, name: str) -> str:
        return name.split("/")[0]

    def sets(self) -> dict[str, list[str]]:
        """The reported file sets: dev18, extra19, all37, and each category."""
        out = {
            "dev18": [n for n in self.names if self.subset[n] == "nab-dev"],
            "extra19": [n for n in self.names if self.subset[n] == "nab-extra"],
            "all37": list(self.names),
        }
        for c in sorted({self.category(n) for n in self.names}):
            out[c] = [n for n in self.names if self.category(n) == c]
        return out


def _detect(job: tuple[str, np.ndarray, np.ndarray, dict[str, Any]]) -> tuple[str, np.ndarray, float]:
    name, seconds, values, params = job
    t0 = time.process_time()
    if params:
        scores = AnomalyDetector(unordered="keep", **params).fit(values, timestamps=seconds).scores_
    else:  # the defaults: exactly what `empire detect --unordered keep` writes
        scores = score_series(values, seconds, unordered="keep")
    return name, scores, time.process_time() - t0


def _rule(job: tuple[str, np.ndarray, np.ndarray, float]) -> tuple[str, np.ndarray, float]:
    name, seconds, values, threshold = job
    t0 = time.process_time()
    det = rule_detector(threshold).set_params(unordered="keep")
    return name, det.fit(values, timestamps=seconds).scores_, time.process_time() - t0


def run_all(corpus: Corpus, fn: Any, arg: Any, jobs: int) -> tuple[dict[str, np.ndarray], float]:
    """Scores of every file (``fn`` over a pool of ``jobs``) and the CPU seconds they took."""
    work = [(n, corpus.seconds[n], corpus.values[n], arg) for n in corpus.names]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex:
            results = list(ex.map(fn, work))
    else:
        results = [fn(w) for w in work]
    return {n: s for n, s, _ in results}, sum(el for _, _, el in results)


def nab(corpus: Corpus, scores: dict[str, np.ndarray], names: list[str], threshold: float | None,
        profile: str = "standard") -> ns.CorpusScore:  # fmt: skip
    return ns.score_corpus({n: scores[n] for n in names}, corpus.stamps, corpus.windows, profile, threshold)


def summary(corpus: Corpus, scores: dict[str, np.ndarray], threshold: float | None) -> dict[str, Any]:
    """Standard score per file set; the three profiles on dev18, extra19 and all37."""
    out: dict[str, Any] = {}
    for key, names in corpus.sets().items():
        if key == NOISE:
            continue
        if key in ("dev18", "extra19", "all37"):
            entry = {}
            for profile, short in PROFILE_KEYS.items():
                cs = nab(corpus, scores, names, threshold, profile)
                entry[short] = round(cs.normalized, 2)
                if threshold is None and profile == "standard":
                    entry["threshold"] = round(cs.threshold, 4)
            out[key] = entry
        else:
            out[key] = round(nab(corpus, scores, names, threshold).normalized, 2)
    return out


def noise_alarms(corpus: Corpus, scores: dict[str, np.ndarray], threshold: float, skip: int) -> float:
    """Alarms (scores at or above ``threshold``) per 10,000 points on the no-anomaly files."""
    names = [n for n in corpus.names if corpus.category(n) == NOISE]
    alarms = sum(int((scores[n][skip:] >= threshold).sum()) for n in names)
    points = sum(max(scores[n].size - skip, 0) for n in names)
    return round(1e4 * alarms / points, 2)


def cross_validate(corpus: Corpus, jobs: int, threshold: float) -> tuple[dict[str, Any], float]:
    """Leave-one-category-out over ``GRID``; also the CPU seconds spent scoring."""
    outputs: list[dict[str, np.ndarray]] = []
    cpu = 0.0
    for params in GRID:
        s, c = run_all(corpus, _detect, params, jobs)
        outputs.append(s)
        cpu += c
    names = np.array(corpus.names)
    groups = [corpus.category(n) for n in corpus.names]
    cache: dict[tuple[int, tuple[int, ...]], float] = {}

    def score(k: int, idx: np.ndarray) -> float:
        key = (k, tuple(int(i) for i in idx))
        if key not in cache:
            cache[key] = nab(corpus, outputs[k], list(names[idx]), threshold).normalized
        return cache[key]

    cv = leave_one_group_out(groups, GRID, score)
    pooled = {n: outputs[cv.chosen[corpus.category(n)]][n] for n in corpus.names}
    result = {
        "grid": [dict(c) for c in GRID],
        "held_out": {g: round(v, 2) for g, v in cv.held_out.items() if math.isfinite(v)},
        "chosen": {g: GRID[k] for g, k in cv.chosen.items()},
        "mean": round(cv.mean, 2),
        "worst": round(cv.worst, 2),
        "all37": round(nab(corpus, pooled, corpus.names, threshold).normalized, 2),
        "in_sample": {"params": GRID[cv.in_sample], "mean": round(cv.in_sample_mean, 2),
                      "all37": round(nab(corpus, outputs[cv.in_sample], corpus.names, threshold).normalized, 2)},
    }  # fmt: skip
    return result, cpu


def online_speed(corpus: Corpus, batch: np.ndarray) -> float:
    """Points/s through ``update()``; exits if it does not reproduce the batch scores."""
    det = AnomalyDetector(unordered="keep")
    values, seconds = corpus.values[ONLINE_FILE], corpus.seconds[ONLINE_FILE]
    t0 = time.process_time()
    online = np.array([det.update(v, t) for v, t in zip(values, seconds, strict=True)])
    elapsed = time.process_time() - t0
    if not np.allclose(online, batch, rtol=0, atol=1e-12):
        raise SystemExit("update() does not reproduce the batch scores")
    return values.size / elapsed


def htm(corpus: Corpus, root: Path) -> dict[str, Any]:
    scores: dict[str, np.ndarray] = {}
    for sub, fixture in (("nab-dev", "numenta_dev_scores.csv.gz"), ("nab-extra", "numenta_extra_scores.csv.gz")):
        scores.update({k: v[1] for k, v in ns.load_results(root / sub / "fixtures" / fixture).items()})
    return {"fixed_0.5": summary(corpus, scores, 0.5), "optimal_all37": summary(corpus, scores, None)["all37"]}


def print_per_file(corpus: Corpus, scores: dict[str, np.ndarray], threshold: float) -> None:
    reports = ns.per_file(scores, corpus.stamps, corpus.windows, threshold)
    print(f"{'file':56s} {'TP':>5s} {'FP':>3s} {'FP cost':>7s} {'raw':>6s}  windows (offset)", file=sys.stderr)
    for r in reports:
        wins = " ".join("miss" if w is None else f"{w[0]:.2f}" for w in r.windows)
        tp = f"{r.tp}/{len(r.windows)}"
        print(f"{r.file:56s} {tp:>5s} {r.fp:3d} {r.fp_cost:7.2f} {r.raw:6.2f}  {wins}", file=sys.stderr)


def shipped_rule_threshold() -> float:
    """The threshold of the first anomaly rule in the shipped example policy."""
    from empire.policies.loading import default_policy_path, load_policy

    rules = load_policy(default_policy_path()).policy.alerting.rules
    return next(r.threshold for r in rules if r.kind.value == "anomaly")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="files scored in parallel (default 2)")
    parser.add_argument("--per-file", action="store_true", help="per-file breakdown on stderr")
    parser.add_argument("--no-cv", action="store_true", help="skip the cross-validation (faster)")
    args = parser.parse_args(argv)
    root = data_root()
    corpus = Corpus(root)
    n_points = sum(v.size for v in corpus.values.values())

    t0 = time.perf_counter()
    scores, cpu = run_all(corpus, _detect, {}, args.jobs)
    wall = time.perf_counter() - t0
    rule_threshold = shipped_rule_threshold()
    rule_scores, _ = run_all(corpus, _rule, rule_threshold, args.jobs)
    learning = int(AnomalyDetector().learning_period)
    if args.per_file:
        print_per_file(corpus, scores, DEFAULT_THRESHOLD)
    out: dict[str, Any] = {
        "benchmark": "anomaly_nab37",
        "files": len(corpus.names),
        "points": n_points,
        "threshold": DEFAULT_THRESHOLD,
        "detector": summary(corpus, scores, DEFAULT_THRESHOLD),
        "detector_optimal_all37": summary(corpus, scores, None)["all37"],
        "detector_noise_alarms_per_10k": noise_alarms(corpus, scores, DEFAULT_THRESHOLD, learning),
        "shipped_rule": {
            "threshold": rule_threshold,
            **summary(corpus, rule_scores, rule_threshold),
            "noise_alarms_per_10k": noise_alarms(corpus, rule_scores, rule_threshold, learning),
        },
    }
    if not args.no_cv:
        out["cv"], _ = cross_validate(corpus, args.jobs, DEFAULT_THRESHOLD)
    out["htm"] = htm(corpus, root)
    out["points_per_second"] = round(n_points / cpu, 1)
    out["update_points_per_second"] = round(online_speed(corpus, scores[ONLINE_FILE]), 1)
    out["wall_seconds"] = round(wall, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
