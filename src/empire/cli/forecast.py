"""`empire forecast`: walk the demand forecaster forward through a CSV and score it.

Why a command: before trusting predictive scaling on a metric, an operator can check what the
forecaster would have achieved on an export of that metric, with exactly the code the benchmark
and the daemon use (``empire.models.evaluation.walk_forward``), side by side with the naive forecasts
any forecaster has to beat (last value, same time yesterday, same time last week).

The input is resampled onto the ``--step`` grid by summing the samples within each step (as the
reference baselines do for hourly series); a step is valid only when all its samples are there and,
with ``--status-column``, all have status ``ok``. The model is fitted on the first
``--train-fraction`` and refitted every ``--refit-every`` on the data before each block. A missing
file, an unknown column (the available ones are listed), a value that is not a number, a timestamp
that cannot be parsed, or a bad duration is a ``ConfigError``: one line, exit 2. A series too short
for any test step to have the baselines' inputs (a week before it) runs but exits 1.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from empire.cli.common import check_output_path, number, replaced_when_done
from empire.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["register", "run"]

MAX_STEPS = 1_000_000
"""Grid steps a forecast may span (114 years of hours, 2 years of minutes): a file whose rows
span the years 1-9999 would otherwise allocate the grid for all of them."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "forecast",
        help="walk-forward demand forecast of a CSV series, scored against naive baselines",
        description="Fit the demand forecaster on the first part of a CSV series, forecast the rest "
        "step by step from past data only, write the forecasts and print MAE/MASE next to the naive "
        "baselines.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire forecast --input nasa_http_hourly.csv --value-column requests --status-column status --output preds.csv
  empire forecast --input nyc_taxi.csv --value-column value --step 1h --horizon 3h   # 30-min rows summed per hour
  empire forecast --input queue.csv --value-column depth --step 5m --horizon 1h --refit-every 1d""",
    )
    p.add_argument("--input", required=True, type=Path, metavar="CSV", help="CSV file with a header row")
    p.add_argument("--value-column", required=True, metavar="COL", help="the demand column")
    p.add_argument("--status-column", metavar="COL", help="rows whose status is not 'ok' are gaps")
    p.add_argument("--timestamp-column", default="timestamp", metavar="COL", help="default: timestamp")
    p.add_argument("--step", default="1h", help="grid step; samples are summed per step (default: 1h)")
    p.add_argument("--horizon", default="1h", help="how far ahead to forecast, a multiple of --step (default: 1h)")
    p.add_argument("--train-fraction", default=0.8, type=number(), help="share used for the first fit (default: 0.8)")
    p.add_argument("--refit-every", default="7d", help="refit cadence in the test part; 0 = never (default: 7d)")
    p.add_argument("--output", type=Path, metavar="CSV", help="write timestamp,actual,forecast,p10,p50,p90,...")
    p.set_defaults(func=run)


def _seconds(option: str, text: str) -> float:
    from empire.policies.durations import parse_duration

    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def read_series(
    path: Path, timestamp_column: str, value_column: str, status_column: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample times (epoch seconds on the wall clock: an offset is kept as local time, since demand
    follows it), values and validity of a CSV, by the CSV rules every series command shares
    (``empire.seriesio``); bad input is a ``ConfigError``."""
    import numpy as np

    from empire.seriesio import read_series_csv

    series = read_series_csv(
        path, timestamp_column=timestamp_column, value_column=value_column, status_column=status_column,
        options=("--timestamp-column", "--value-column", "--status-column"), clock="wall",
    )  # fmt: skip
    if len(series) < 2:
        raise ConfigError(f"{path}: need at least two rows of data, found {len(series)}")
    return series.seconds, series.values, series.ok & np.isfinite(series.values)


def _fmt(x: Any) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.3f}".rstrip("0").rstrip(".")


def _write(path: Path, result: Any, quantile_name: Any) -> None:
    import numpy as np

    qcols = [quantile_name(q) for q in result.quantiles]
    base = list(result.baselines)
    with replaced_when_done(path, "--output") as partial, open(partial, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "actual", "forecast", *qcols, "method", *base])
        for i, t in enumerate(result.timestamps):
            stamp = np.datetime_as_string(t, unit="s").replace("T", " ")
            w.writerow(
                [
                    stamp,
                    _fmt(result.actual[i]),
                    _fmt(result.forecast[i]),
                    *(_fmt(v) for v in result.quantile_forecasts[i]),
                    result.method[i],
                    *(_fmt(result.baselines[b][i]) for b in base),
                ]
            )


_LABELS = {
    "forecast": "empire forecaster",
    "naive": "naive (last value)",
    "seasonal_daily": "seasonal naive daily",
    "seasonal_weekly": "seasonal naive weekly",
    "seasonal_change": "fallback (seasonal change)",
}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from empire.models.evaluation import walk_forward
    from empire.models.features import resample_sum
    from empire.models.forecast import DemandForecaster, quantile_name

    step = _seconds("--step", args.step)
    horizon = _seconds("--horizon", args.horizon)
    refit = _seconds("--refit-every", args.refit_every)
    if step <= 0:
        raise ConfigError("--step: must be positive")
    if horizon < step or abs(horizon / step - round(horizon / step)) > 1e-9:
        raise ConfigError(f"--horizon: {args.horizon} is not a whole number of --step {args.step}")
    if not 0.0 < args.train_fraction < 1.0:
        raise ConfigError(f"--train-fraction: must be between 0 and 1, got {args.train_fraction}")
    if args.output is not None:
        check_output_path(args.output, "--output")
    times, values, valid = read_series(args.input, args.timestamp_column, args.value_column, args.status_column)
    if (times[-1] - times[0]) / step > MAX_STEPS:
        raise ConfigError(
            f"{args.input}: the rows span {(times[-1] - times[0]) / 86400:,.0f} days, more than {MAX_STEPS:,} steps "
            f"of {args.step}; use a longer --step or cut the file"
        )
    try:
        grid, sums, ok = resample_sum(times, values, valid, step)
    except ValueError as exc:
        raise ConfigError(f"{args.input}: --step {args.step}: {exc}") from None
    n_train = math.floor(args.train_fraction * len(grid))
    if not 0 < n_train < len(grid):
        raise ConfigError(
            f"{args.input}: {len(grid)} steps of {args.step} leave no train or no test part "
            f"at --train-fraction {args.train_fraction}"
        )
    stamps = np.round(grid).astype(np.int64).astype("datetime64[s]")
    result = walk_forward(
        sums,
        stamps,
        ok,
        forecaster=DemandForecaster(horizon=horizon),
        train_fraction=args.train_fraction,
        refit_every=refit if refit > 0 else None,
    )
    if args.output is not None:
        _write(args.output, result, quantile_name)

    m = result.metrics
    n_test = len(result.timestamps)
    print(
        f"{args.value_column}: step {args.step}, horizon {args.horizon}; train {result.n_train} steps, "
        f"test {n_test} steps ({m['forecast']['n']} scored), {result.refits} fit(s)"
    )
    if m["forecast"]["n"]:
        print(f"{'method':<28} {'MAE':>12} {'MASE_1':>8} {'MASE_d':>8}")
        for name, label in _LABELS.items():
            row = m[name]
            print(f"{label:<28} {row['mae']:>12.2f} {row['mase_1']:>8.3f} {row['mase_d']:>8.3f}")
    if "coverage" in m["forecast"] and len(result.quantiles) > 1:
        lo, hi = quantile_name(min(result.quantiles)), quantile_name(max(result.quantiles))
        print(f"actuals inside {lo}..{hi}: {m['forecast']['coverage']:.1%}")
    methods, counts = np.unique(result.method.astype(str), return_counts=True)
    used = ", ".join(f"{meth or 'none'} {c}" for meth, c in zip(methods, counts, strict=True))
    print(f"forecast methods: {used}")
    for note in result.notes:
        print(f"note: {note}")
    if args.output is not None:
        print(f"wrote {n_test} rows to {args.output}")
    if not m["forecast"]["n"]:
        print(
            "no test step could be scored: each needs a valid actual and valid values one step, one day "
            "and one week before it (the baselines); give a longer series",
            file=sys.stderr,
        )
        return 1
    return 0
