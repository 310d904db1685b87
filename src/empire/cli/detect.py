"""`empire detect`: score CSV files of a metric with the streaming anomaly detector.

Why a batch command for a streaming detector: to backtest a metric export (or a benchmark file)
offline with exactly the detector, defaults and threshold the daemon uses live. Each input is
scored from scratch, causally, and written as ``DIR/<input file name>`` with columns
``timestamp,anomaly_score``, one row per input row, in the same order. Empty or ``nan`` values
score 0; a missing file, an unknown column, a value that is not a number, or timestamps that go
backwards are bad input (``ConfigError``: one line, exit 2). Some exports do step back once (a
clock adjustment: NAB's machine_temperature file goes back 55 minutes at one row); with
``--unordered keep`` such rows are scored in file order, placed at the latest timestamp seen so
far for the seasonal lookups (``AnomalyDetector(unordered="keep")``). ``--threshold T`` runs the
detector at that operating point (as an alert rule with ``threshold: T`` does: the threshold also
sets the post-detection suppression) and adds a column ``anomaly``: 1 where the score is at or
above ``T``, else 0.

``score_series`` is the one function that turns a parsed file into scores; the NAB benchmark
calls it too, so what it measures is what this command writes.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empire.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["UNORDERED", "register", "run", "score_series"]

# What to do with timestamps that go backwards (see the module docstring).
UNORDERED = ("error", "keep")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="score metric CSV files for anomalies",
        description="Score each INPUT.csv with the anomaly detector and write "
        "DIR/<name> with columns timestamp,anomaly_score (one row per input row).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire detect metrics/*.csv --output-dir scores/         # scores/<name>.csv per input, in [0, 1]
  empire detect queue.csv --value-column depth --output-dir scores/
  empire detect sensor.csv --unordered keep --output-dir scores/   # timestamps that go backwards
  empire detect queue.csv --threshold 0.5 --output-dir scores/     # adds a 0/1 column anomaly""",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT.csv", help="CSV files with a header row")
    p.add_argument("--output-dir", required=True, type=Path, metavar="DIR", help="where results go")
    p.add_argument("--timestamp-column", default="timestamp", help="default: timestamp")
    p.add_argument("--value-column", default="value", help="default: value")
    p.add_argument(
        "--unordered",
        choices=UNORDERED,
        default="error",
        help="timestamps that go backwards: error (default) or keep (score in file order, "
        "placed at the latest timestamp so far for seasonality)",
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=None,
        metavar="T",
        help="operating point in (0, 1] (an alert rule's threshold); adds a column anomaly (1 if score >= T)",
    )
    p.set_defaults(func=run)


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def read_series(path: Path, timestamp_column: str, value_column: str) -> tuple[list[str], list[float]]:
    """The timestamp strings and float values of one CSV; bad input is a ``ConfigError``."""
    from empire.seriesio import read_series_csv

    series = read_series_csv(path, timestamp_column=timestamp_column, value_column=value_column, status_column=None)
    return series.timestamps, series.values


def _parse_stamps(path: Path, stamps: list[str]) -> np.ndarray:
    import numpy as np

    from empire.models.anomaly import to_seconds

    try:
        return to_seconds(stamps) if stamps else np.empty(0)
    except (ValueError, TypeError):
        pass  # find the bad row below, for the message
    out = np.empty(len(stamps))
    for i, s in enumerate(stamps):
        try:
            out[i] = to_seconds([s])[0]
        except (ValueError, TypeError):
            raise ConfigError(f"{path}: line {i + 2}: timestamp {s!r} is not a date/time or number") from None
    return out


def _format_score(score: float) -> str:
    """Six decimals, rounded down: a score just below a threshold (a suppressed point is held at
    the largest float below it) must not print as the threshold itself."""
    return f"{math.floor(score * 1e6) / 1e6:.6f}"


def score_series(values: Any, seconds: Any, *, unordered: str = "error", threshold: float | None = None) -> np.ndarray:
    """Scores of one series with the daemon's detector (timestamps in epoch seconds), at
    ``threshold`` (default: the detector's ``DEFAULT_THRESHOLD``)."""
    import numpy as np

    from empire.models.anomaly import DEFAULT_THRESHOLD, AnomalyDetector

    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return np.empty(0)
    det = AnomalyDetector(threshold=DEFAULT_THRESHOLD if threshold is None else threshold, unordered=unordered)
    return det.fit(values, timestamps=seconds).scores_


def detect_file(
    path: Path,
    out_dir: Path,
    timestamp_column: str,
    value_column: str,
    unordered: str = "error",
    threshold: float | None = None,
) -> int:
    """Score one file into ``out_dir``; returns the number of rows."""
    stamps, values = read_series(path, timestamp_column, value_column)
    seconds = _parse_stamps(path, stamps)
    try:
        scores = score_series(values, seconds, unordered=unordered, threshold=threshold)
    except ConfigError as exc:
        # "row N" counts data rows from 0; the file line is N + 2 (header, 1-based).
        hint = " (use --unordered keep to score such rows in file order)" if "out of order" in str(exc) else ""
        raise ConfigError(f"{path}: {exc}{hint}") from None
    target = out_dir / path.name
    with open(target, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        if threshold is None:
            w.writerow(["timestamp", "anomaly_score"])
            for ts, sc in zip(stamps, scores, strict=True):
                w.writerow([ts, _format_score(sc)])
        else:
            w.writerow(["timestamp", "anomaly_score", "anomaly"])
            for ts, sc in zip(stamps, scores, strict=True):
                w.writerow([ts, _format_score(sc), int(sc >= threshold)])
    return len(stamps)


def run(args: argparse.Namespace) -> int:
    out_dir: Path = args.output_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output-dir {out_dir}: cannot create: {exc.strerror or exc}") from exc
    names = [p.name for p in args.inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"inputs: several files named {', '.join(dupes)} would overwrite each other's output")
    clobbered = [str(p) for p in args.inputs if (out_dir / p.name).resolve() == p.resolve()]
    if clobbered:
        raise ConfigError(f"--output-dir {out_dir}: the output would overwrite the input {', '.join(clobbered)}; "
                          "choose another directory")  # fmt: skip
    total = len(args.inputs)
    for k, path in enumerate(args.inputs, 1):
        t0 = time.perf_counter()
        rows = detect_file(
            path, out_dir, args.timestamp_column, args.value_column, args.unordered, getattr(args, "threshold", None)
        )
        if total > 1:
            took = time.perf_counter() - t0
            print(f"[{k}/{total}] {path.name}: {rows} rows in {took:.1f}s", file=sys.stderr)
    return 0
