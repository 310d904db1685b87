"""Anomaly detection on the NAB development subset: one JSON line of NAB scores and speed.

Why: the issue's claim is "beats Numenta HTM (61.30, standard profile) on the subset with the
daemon's fixed threshold and one set of default hyperparameters". This script measures exactly
that: it scores each of the 18 files with ``empire.cli.detect.score_series`` (the code path of
``empire detect``, so ``AnomalyDetector()`` with its defaults), scores the result with
``nab_score`` at ``DEFAULT_THRESHOLD`` and at the optimal threshold (NAB's in-sample number), and
scores the two fixture detectors with the same scorer in the same run as a control. An alert
rule carries its own threshold: the scores are also reported at the shipped example policy's
anomaly-rule threshold (``policy``), which trades windows for fewer false alarms. It also
times the online path (``update()`` one point at a time) on one file.

Data: ``$EMPIRE_SHARED_DATA/nab-dev`` (default ``../shared/data/nab-dev`` next to the repository).
One file (machine_temperature_system_failure) steps back 55 minutes once (a clock adjustment at
row 10149); it is scored like ``empire detect --unordered keep`` would.

Usage: ``python benchmarks/anomaly.py [--data-dir DIR] [--jobs N] [--per-file]``; ``--per-file``
also prints, on stderr, each file's windows found (how far into the window the first detection
is, and the score it earns) and false positives at the fixed threshold (standard profile).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import nab_score as ns
from empire.cli.detect import score_series
from empire.models.anomaly import DEFAULT_THRESHOLD, AnomalyDetector, to_seconds

PROFILE_KEYS = {"standard": "standard", "reward_low_FP_rate": "low_fp", "reward_low_FN_rate": "low_fn"}
ONLINE_FILE = "realKnownCause/ec2_request_latency_system_failure.csv"


def _detect(args: tuple[str, np.ndarray, np.ndarray]) -> tuple[str, np.ndarray, float]:
    name, stamps, values = args
    t0 = time.perf_counter()
    scores = score_series(values, to_seconds(stamps), unordered="keep")
    return name, scores, time.perf_counter() - t0


def _detect_at(threshold: float, work: list) -> dict[str, np.ndarray]:
    """Scores from a detector built as the daemon builds it for a rule: `AnomalyDetector(threshold=...)`
    (the threshold also sets how long a detection suppresses the next)."""
    out = {}
    for name, stamps, values in work:
        det = AnomalyDetector(threshold=threshold, unordered="keep")
        out[name] = det.fit(values.astype(float), timestamps=to_seconds(stamps)).scores_
    return out


def _online(stamps: np.ndarray, values: np.ndarray, batch: np.ndarray) -> float:
    """Points/s through ``update()``; also checks that it reproduces the batch scores."""
    det = AnomalyDetector(unordered="keep")
    seconds = to_seconds(stamps)
    t0 = time.perf_counter()
    online = np.array([det.update(v, t) for v, t in zip(values, seconds, strict=True)])
    elapsed = time.perf_counter() - t0
    if not np.allclose(online, batch, rtol=0, atol=1e-9):
        raise SystemExit("update() does not reproduce the batch scores")
    return values.size / elapsed


def _summary(scores: dict, stamps: dict, windows: dict, threshold: float | None) -> dict:
    out: dict[str, float] = {}
    for profile, cs in ns.score_all_profiles(scores, stamps, windows, threshold).items():
        out[PROFILE_KEYS[profile]] = round(cs.normalized, 2)
        if threshold is None:
            out[f"{PROFILE_KEYS[profile]}_threshold"] = round(cs.threshold, 4)
    return out


def _print_per_file(scores: dict, stamps: dict, windows: dict) -> None:
    reports = ns.per_file(scores, stamps, windows, DEFAULT_THRESHOLD)
    print(f"{'file':56s} {'TP':>5s} {'FP':>3s} {'FP cost':>7s} {'raw':>6s}  windows (offset:score)", file=sys.stderr)
    for r in reports:
        wins = " ".join("miss" if w is None else f"{w[0]:.2f}:{w[1]:.2f}" for w in r.windows)
        tp = f"{r.tp}/{len(r.windows)}"
        print(f"{r.file:56s} {tp:>5s} {r.fp:3d} {r.fp_cost:7.2f} {r.raw:6.2f}  {wins}", file=sys.stderr)
    total_tp = sum(r.tp for r in reports)
    total_w = sum(len(r.windows) for r in reports)
    total_fp = sum(r.fp for r in reports)
    print(f"{'total':56s} {total_tp:>2d}/{total_w:<2d} {total_fp:3d}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="files scored in parallel (default 1)")
    parser.add_argument("--per-file", action="store_true", help="per-file breakdown on stderr")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or ns.default_data_dir()
    corpus = ns.load_corpus(data_dir)
    windows = ns.load_windows(data_dir)
    stamps = {name: ns.parse_timestamps(ts) for name, (ts, _) in corpus.items()}
    work = [(name, stamps[name], corpus[name][1]) for name in sorted(corpus)]

    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as ex:
            results = list(ex.map(_detect, work))
    else:
        results = [_detect(w) for w in work]
    wall = time.perf_counter() - t0
    scores = {name: s for name, s, _ in results}
    cpu = sum(el for _, _, el in results)
    n_points = sum(s.size for s in scores.values())
    online = _online(stamps[ONLINE_FILE], corpus[ONLINE_FILE][1], scores[ONLINE_FILE])

    fixtures = {}
    for det in ("numenta", "windowedGaussian"):
        res = ns.load_results(data_dir / "fixtures" / f"{det}_dev_scores.csv.gz")
        f_scores = {k: v[1] for k, v in res.items()}
        f_stamps = {k: ns.parse_timestamps(v[0]) for k, v in res.items()}
        fixtures[det] = _summary(f_scores, f_stamps, windows, None)
    fixtures["numenta_fixed_0.5"] = _summary(
        {k: v[1] for k, v in ns.load_results(data_dir / "fixtures" / "numenta_dev_scores.csv.gz").items()},
        stamps,
        windows,
        0.5,
    )
    if args.per_file:
        _print_per_file(scores, stamps, windows)
    policy_threshold = _shipped_rule_threshold()
    policy_scores = _detect_at(policy_threshold, work)

    print(
        json.dumps(
            {
                "benchmark": "anomaly_nab_dev",
                "files": len(scores),
                "points": n_points,
                "fixed_threshold": DEFAULT_THRESHOLD,
                "fixed": _summary(scores, stamps, windows, DEFAULT_THRESHOLD),
                "optimal": _summary(scores, stamps, windows, None),
                "policy_threshold": policy_threshold,
                "policy": _summary(policy_scores, stamps, windows, policy_threshold),
                "fixtures": fixtures,
                "points_per_second": round(n_points / cpu, 1),
                "update_points_per_second": round(online, 1),
                "wall_seconds": round(wall, 2),
            }
        )
    )
    return 0


def _shipped_rule_threshold() -> float:
    """The threshold of the first anomaly rule in the shipped example policy."""
    from empire.policies.loading import default_policy_path, load_policy

    rules = load_policy(default_policy_path()).policy.alerting.rules
    return next(r.threshold for r in rules if r.kind.value == "anomaly")


if __name__ == "__main__":
    sys.exit(main())
