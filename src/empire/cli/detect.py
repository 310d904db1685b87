"""`empire detect`: score CSV files of a metric with the streaming anomaly detector.

Why a batch command for a streaming detector: to backtest a metric export (or a benchmark file)
offline with exactly the detector, defaults and threshold the daemon uses live. Each input is
scored from scratch, causally, and written as ``DIR/<input file name>`` with columns
``timestamp,anomaly_score``, one row per input row, in the same order. Empty or ``nan`` values
score 0; a missing file, an unknown column, a value that is not a number, or timestamps that go
backwards or repeat are bad input (``ConfigError``: one line, exit 2; the CSV rules are
``empire.seriesio``'s, shared with ``forecast`` and ``backtest``). Every input is read and checked
before any is scored, and outputs are written to temporary files renamed into place at the end:
one bad input leaves no output of the others behind. The detector is fed in blocks, so memory
stays proportional to the file. Some exports do step back once (a
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
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empire.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from empire.seriesio import SeriesFile

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


def read_series(path: Path, timestamp_column: str, value_column: str, unordered: str = "error") -> SeriesFile:
    """One input, by the CSV rules every series command shares (``empire.seriesio``); rows out
    of time order are an error unless ``unordered`` is ``keep``."""
    from empire.seriesio import read_series_csv

    return read_series_csv(
        path, timestamp_column=timestamp_column, value_column=value_column, status_column=None,
        options=("--timestamp-column", "--value-column", None), order="any" if unordered == "keep" else "increasing",
        order_hint=" (or use --unordered keep to score such rows in file order)",
    )  # fmt: skip


def _format_score(score: float) -> str:
    """Six decimals, rounded down: a score just below a threshold (a suppressed point is held at
    the largest float below it) must not print as the threshold itself."""
    return f"{math.floor(score * 1e6) / 1e6:.6f}"


BLOCK = 8192
"""Points scored at a time: memory stays proportional to the data (``AnomalyDetector.fit`` on a
whole 50 MB file held 5 GB of intermediate arrays)."""


def score_series(values: Any, seconds: Any, *, unordered: str = "error", threshold: float | None = None) -> np.ndarray:
    """Scores of one series with the daemon's detector (timestamps in epoch seconds), at
    ``threshold`` (default: the detector's ``DEFAULT_THRESHOLD``), fed in blocks of ``BLOCK``."""
    import numpy as np

    from empire.models.anomaly import DEFAULT_THRESHOLD, AnomalyDetector

    values = np.asarray(values, dtype=float)
    seconds = np.asarray(seconds, dtype=float)
    det = AnomalyDetector(threshold=DEFAULT_THRESHOLD if threshold is None else threshold, unordered=unordered)
    scores = np.empty(values.size)
    for i in range(0, values.size, BLOCK):
        scores[i : i + BLOCK] = det.partial_fit(values[i : i + BLOCK], timestamps=seconds[i : i + BLOCK]).scores_
    return scores


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.partial")


def detect_file(
    path: Path,
    out_dir: Path,
    timestamp_column: str,
    value_column: str,
    unordered: str = "error",
    threshold: float | None = None,
) -> tuple[int, Path]:
    """Score one file into a temporary file in ``out_dir``; returns the number of rows and that
    file (``run`` renames every output into place once all inputs are scored)."""
    from empire.seriesio import iter_column

    series = read_series(path, timestamp_column, value_column, unordered)
    scores = score_series(series.values, series.seconds, unordered=unordered, threshold=threshold)
    partial = _temporary(out_dir / path.name)
    try:
        with open(partial, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "anomaly_score"] + ([] if threshold is None else ["anomaly"]))
            for ts, sc in zip(iter_column(path, timestamp_column), scores, strict=True):
                w.writerow([ts, _format_score(sc)] + ([] if threshold is None else [int(sc >= threshold)]))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"--output-dir {out_dir}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return len(series), partial


def run(args: argparse.Namespace) -> int:
    out_dir: Path = args.output_dir
    names = [p.name for p in args.inputs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"inputs: several files named {', '.join(dupes)} would overwrite each other's output")
    clobbered = [str(p) for p in args.inputs if (out_dir / p.name).resolve() == p.resolve()]
    if clobbered:
        raise ConfigError(f"--output-dir {out_dir}: the output would overwrite the input {', '.join(clobbered)}; "
                          "choose another directory")  # fmt: skip
    for path in args.inputs:  # every input is checked before anything is scored or written
        read_series(path, args.timestamp_column, args.value_column, args.unordered)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--output-dir {out_dir}: cannot create: {exc.strerror or exc}") from None
    total = len(args.inputs)
    done: list[tuple[Path, Path]] = []
    try:
        for k, path in enumerate(args.inputs, 1):
            t0 = time.perf_counter()
            rows, partial = detect_file(
                path,
                out_dir,
                args.timestamp_column,
                args.value_column,
                args.unordered,
                getattr(args, "threshold", None),
            )
            done.append((partial, out_dir / path.name))
            if total > 1:
                took = time.perf_counter() - t0
                print(f"[{k}/{total}] {path.name}: {rows} rows in {took:.1f}s", file=sys.stderr)
    except BaseException:
        for partial, _ in done:
            partial.unlink(missing_ok=True)
        raise
    for partial, target in done:
        os.replace(partial, target)
    return 0
