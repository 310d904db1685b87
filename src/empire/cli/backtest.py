"""`empire backtest`: replay a demand trace through the control loop; compare reactive, empire and oracle."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from empire.cli.common import check_output_path, count, number, replaced_when_done
from empire.errors import ConfigError

PLOT_FORMATS = ("eps", "jpeg", "jpg", "pdf", "png", "ps", "svg", "svgz", "tif", "tiff", "webp")
"""What matplotlib's Agg backend writes (checked before the run, not after it)."""


def _capacity(text: str) -> float | str:
    """--capacity: a number of requests per minute, or `p99` (the suite's rule)."""
    if text.strip().lower() == "p99":
        return "p99"
    return number(high=1e9, above=0)(text)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backtest",
        help="replay a demand trace through the loop on a simulated cluster: reactive vs empire vs oracle",
        description=(
            "Replay a per-minute demand trace (default: the shipped NASA-HTTP trace, Jul-Aug 1995) through the "
            "real control loop on a fake clock and a simulated cluster (each ready replica serves CAPACITY "
            "requests/min, a replica is ready STARTUP_DELAY after it is requested, removal is immediate), for "
            "three policies in one run: reactive (HPA), empire (predictive + reactive) and oracle (perfect "
            "foresight). Counts under-provisioned minutes, demand not served, replica-hours and scaling actions "
            "over the minutes whose status is ok."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""trace: a CSV (or .csv.gz) with a header: timestamp,value[,status]; a coarser step (e.g. 30 min)
is turned into requests per minute (divided by the step, interpolated); --noise poisson draws
per-minute arrivals at that rate. Rows whose status is not 'ok' are replayed but not counted.

TRACE may also name a trace of the suite, suite:NAME (e.g. suite:twitter-fb), with the suite's
capacity rule (the 99th-percentile minute needs 40 replicas) unless --capacity is given.

--suite runs every trace of the default suite (or the comma-separated NAMES) for every policy, in
--workers processes, and prints a table per trace plus the totals: NASA-HTTP, NYC taxi (native and
with Poisson arrivals, seeds 0-2), five Twitter-volume traces and a synthetic flash crowd. It holds
when empire is no worse than reactive on every trace (under-provisioned minutes and replica-hours)
and has at most half of reactive's under-provisioned minutes over all of them. Exit 1 when not.

examples:
  empire backtest                                   the shipped NASA trace, reference settings
  empire backtest --json out/bt.json --plot out/bt.png
  empire backtest suite:twitter-fb --plot out/fb.png
  empire backtest --suite --json out/suite.json     every trace of the suite (minutes, not seconds)
  empire backtest taxi.csv --scale 0.083 --noise poisson
  empire backtest --capacity 20 --startup-delay 3m --quantile 0.95""",
    )
    p.add_argument("trace", nargs="?", metavar="TRACE.csv",
                   help="demand trace, or suite:NAME (default: shipped NASA-HTTP)")  # fmt: skip
    p.add_argument("--suite", nargs="?", const="all", metavar="NAMES",
                   help="run the backtest suite (all traces, or the comma-separated NAMES)")  # fmt: skip
    p.add_argument("--value-column", metavar="COL", help="default: the first column besides timestamp/status")
    p.add_argument("--status-column", metavar="COL", help="default: 'status' when present")
    p.add_argument("--timestamp-column", metavar="COL", default="timestamp")
    p.add_argument("--scale", type=number(0, 1e9), default=1.0, help="multiply demand (default 1)")
    p.add_argument("--noise", choices=("none", "poisson"), default="none", help="per-minute arrivals (default none)")
    p.add_argument("--seed", type=count(0, 2**63 - 1), default=0, help="seed for --noise poisson")
    p.add_argument("--days", type=number(high=1e6, above=0), help="only the first N days of the trace")
    g = p.add_argument_group("cluster and reactive (HPA) baseline")
    g.add_argument(
        "--capacity",
        type=_capacity,
        help="requests/min per ready replica, or p99: the trace's 99th-percentile minute / 40, as the suite "
        "does (default 10; for a suite trace, p99)",
    )
    g.add_argument("--startup-delay", default="2m", help="request to ready (default 2m)")
    g.add_argument("--min-replicas", type=count(0, 1_000_000), default=1)
    g.add_argument("--max-replicas", type=count(1, 1_000_000), default=10_000)
    g.add_argument("--target-utilization", type=number(), default=0.7, help="HPA target (default 0.7)")
    g.add_argument("--tolerance", type=number(0, 10), default=0.1)
    g.add_argument("--scale-down-window", default="5m", help="HPA scale-down stabilization (default 5m)")
    g.add_argument("--observation-lag", default="0s",
                   help="a minute's demand is seen this long after the minute starts (default 0s: at once)")  # fmt: skip
    e = p.add_argument_group("empire")
    e.add_argument("--quantile", type=number(), default=0.975,
                   help="forecast quantile at the centre of the guard's variants (default 0.975)")  # fmt: skip
    e.add_argument("--scheduling-buffer", help="forecast this far ahead (default: the start-up delay)")
    o = p.add_argument_group("output")
    o.add_argument("--policies", default="reactive,empire,oracle", help="comma-separated subset")
    o.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    o.add_argument("--plot", metavar="FILE.png", help="demand vs ready capacity per policy (PNG)")
    o.add_argument("--workers", type=count(1, 64), default=2, help="processes (default 2: reactive beside empire)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def _seconds(text: str | None, name: str) -> float | None:
    if text is None:
        return None
    from pydantic import TypeAdapter, ValidationError

    from empire.policies.durations import Duration

    try:
        return TypeAdapter(Duration).validate_python(text).total_seconds()
    except ValidationError:
        raise ConfigError(f"{name}: invalid duration {text!r}; use e.g. 90s, 2m, 1h") from None


class ProgressBar:
    """One line on stderr, redrawn in place on a terminal; a line per 10 % otherwise."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        # Resolved per instance, not at import: sys.stderr may be swapped (pytest capture, redirection).
        self.stream, self.width = stream if stream is not None else sys.stderr, width
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last_tenth = -1

    def __call__(self, name: str, done: int, total: int) -> None:
        frac = done / max(1, total)
        bar = "#" * int(frac * self.width) + "-" * (self.width - int(frac * self.width))
        text = f"{name:<9}[{bar}] {frac:4.0%} {done:,}/{total:,} min  {time.monotonic() - self.started:5.1f}s"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done >= total else ""))
            self.stream.flush()
        elif int(frac * 10) != self._last_tenth:
            self._last_tenth = int(frac * 10)
            self.stream.write(text + "\n")
            self.stream.flush()


def run(args: argparse.Namespace) -> int:
    from empire.agent.backtest.engine import POLICIES, BacktestSettings, run_backtest
    from empire.agent.backtest.report import format_table, target_check, to_json, write_plot
    from empire.agent.backtest.trace import load_trace

    policies = tuple(p.strip() for p in args.policies.split(",") if p.strip())
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise ConfigError(f"--policies: unknown {', '.join(bad) or '(none)'}; valid: {', '.join(POLICIES)}")
    for name, value in (("--quantile", args.quantile), ("--target-utilization", args.target_utilization)):
        if not 0 < value < 1 + (name != "--quantile"):
            raise ConfigError(f"{name} must be between 0 and 1 (got {value})")
    if args.min_replicas > args.max_replicas:
        raise ConfigError(f"--min-replicas {args.min_replicas} is above --max-replicas {args.max_replicas}")
    if args.json:
        check_output_path(args.json, "--json")
    if args.plot:
        check_output_path(args.plot, "--plot", PLOT_FORMATS)
    settings = BacktestSettings(
        capacity=args.capacity if isinstance(args.capacity, float) else 10.0, startup_delay=_seconds(args.startup_delay, "--startup-delay") or 0.0,
        min_replicas=args.min_replicas, max_replicas=args.max_replicas, target_utilization=args.target_utilization,
        tolerance=args.tolerance, scale_down_window=_seconds(args.scale_down_window, "--scale-down-window") or 0.0,
        quantile=args.quantile, scheduling_buffer=_seconds(args.scheduling_buffer, "--scheduling-buffer"),
        observation_lag=_seconds(args.observation_lag, "--observation-lag") or 0.0,
    )  # fmt: skip
    if args.suite:
        return _run_suite(args, settings, policies)
    if args.trace and args.trace.startswith("suite:"):
        from empire.agent.backtest.suite import capacity_for, suite_trace

        spec = suite_trace(args.trace.removeprefix("suite:"))
        trace = spec.load()
        capacity = args.capacity if isinstance(args.capacity, float) else spec.capacity or capacity_for(trace)
        settings = replace(settings, capacity=capacity)
    else:
        trace = load_trace(args.trace, value_column=args.value_column, status_column=args.status_column,
                           timestamp_column=args.timestamp_column, scale=args.scale, noise=args.noise, seed=args.seed,
                           days=args.days)  # fmt: skip
        if args.capacity == "p99":
            from empire.agent.backtest.suite import capacity_for

            settings = replace(settings, capacity=capacity_for(trace))
    if args.days is not None:
        trace = trace.head(max(1, int(args.days * 1440)))
    started = time.monotonic()
    progress = None if args.no_progress else ProgressBar()
    try:
        runs = run_backtest(trace, settings, policies, progress=progress, workers=max(1, args.workers))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    seconds = time.monotonic() - started
    print(format_table(runs, trace, settings))
    if args.json:
        with replaced_when_done(args.json, "--json") as partial:
            partial.write_text(json.dumps(to_json(runs, trace, settings, seconds), indent=2) + "\n", encoding="utf-8")
        print(f"figures: {args.json}")
    if args.plot:
        with replaced_when_done(args.plot, "--plot") as partial:
            write_plot(runs, trace, settings, partial, fmt=Path(args.plot).suffix.lstrip(".").lower())
        print(f"plot: {args.plot}")
    check = target_check(runs)
    return 0 if check is None or check["met"] else 1


def _run_suite(args: argparse.Namespace, settings: Any, policies: tuple[str, ...]) -> int:
    from empire.agent.backtest.suite import DEFAULT_SUITE, format_suite, run_suite, suite_check, suite_trace

    if args.trace or args.plot or args.days is not None:
        raise ConfigError("--suite runs the suite's own traces in full: leave out TRACE, --days and --plot "
                          "(plot one trace with: empire backtest suite:NAME --plot FILE)")  # fmt: skip
    names = [n.strip() for n in args.suite.split(",") if n.strip()] if args.suite != "all" else []
    traces = tuple(suite_trace(n) for n in names) if names else DEFAULT_SUITE
    started = time.monotonic()
    progress = None if args.no_progress else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        results, _ = run_suite(traces, settings, policies, workers=max(1, args.workers), progress=progress)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(format_suite(results, settings))
    check = suite_check(results)
    if args.json:
        body = {"settings": settings.as_dict(), "wall_seconds": round(time.monotonic() - started, 1),
                "traces": [{"name": r.name, "minutes": r.minutes, "counted_minutes": r.counted_minutes,
                            "capacity": r.capacity, "policies": r.summaries, "wall_seconds": r.seconds,
                            "check": r.check()} for r in results],
                "suite": check}  # fmt: skip
        with replaced_when_done(args.json, "--json") as partial:
            partial.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        print(f"figures: {args.json}")
    return 0 if check is None or check["met"] else 1
