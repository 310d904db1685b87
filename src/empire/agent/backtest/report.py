"""What the backtest prints and writes: the comparison table, the JSON figures, the plot.

The table answers the question the issue asks ("does empire halve reactive's under-provisioned
minutes at no more replica-hours?") on its last line, measured in the same run; the JSON carries
every figure plus the settings and the exact policy document each loop ran; the plot shows demand
against *ready* capacity per policy, with under-provisioned minutes marked in red, over the whole
trace and zoomed on the day where reactive was short most often.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from empire.agent.backtest.engine import BacktestSettings, PolicyRun, policy_for
from empire.agent.backtest.trace import DemandTrace

__all__ = ["format_table", "target_check", "to_json", "write_plot"]


def target_check(runs: dict[str, PolicyRun]) -> dict[str, Any] | None:
    """The issue's target: empire <= half of reactive's under-provisioned minutes, replica-hours <= reactive's."""
    if "reactive" not in runs or "empire" not in runs:
        return None
    r, e = runs["reactive"].books.summary(), runs["empire"].books.summary()
    half = r["under_provisioned_minutes"] / 2
    under_ok = e["under_provisioned_minutes"] <= half
    cost_ok = e["replica_hours"] <= r["replica_hours"]
    return {"under_provisioned_at_most_half": under_ok, "replica_hours_not_more": cost_ok, "met": under_ok and cost_ok,
            "empire_under": e["under_provisioned_minutes"], "half_of_reactive_under": half,
            "empire_replica_hours": e["replica_hours"], "reactive_replica_hours": r["replica_hours"]}  # fmt: skip


def format_table(runs: dict[str, PolicyRun], trace: DemandTrace, settings: BacktestSettings) -> str:
    oracle_rh = runs["oracle"].books.summary()["replica_hours"] if "oracle" in runs else None
    lines = [
        f"trace {trace.name}: {len(trace):,} minutes from {trace.start:%Y-%m-%d %H:%M}, "
        f"{trace.valid_minutes:,} counted (status ok)",
        f"cluster: {settings.capacity:g} req/min per ready replica, ready {settings.startup_delay:g}s after request; "
        f"reactive = HPA (target {settings.target_utilization:.0%}, tolerance {settings.tolerance:g}, "
        f"scale-down window {settings.scale_down_window:g}s, every minute)",
        f"empire = the same reactive rule plus the guarded forecast (p{settings.quantile * 100:g} and neighbours, "
        f"{settings.buffer:g}s ahead at full capacity): it acts only through a variant that beat reactive on the last week",
        "",
        f"{'policy':<10}{'under-prov. min':>16}{'% of min':>10}{'not served':>12}{'replica-h':>11}{'vs oracle':>10}"
        f"{'actions':>9}{'wall s':>8}",
    ]
    for name, run in runs.items():
        s = run.books.summary()
        share = 100 * s["under_provisioned_minutes"] / max(1, s["counted_minutes"])
        rel = f"{s['replica_hours'] / oracle_rh:.2f}x" if oracle_rh else "-"
        lines.append(
            f"{name:<10}{s['under_provisioned_minutes']:>16,}{share:>9.2f}%{s['unserved_demand']:>12,.0f}"
            f"{s['replica_hours']:>11,.0f}{rel:>10}{s['scaling_actions']:>9,}{run.seconds:>8.1f}"
        )
    check = target_check(runs)
    if check is not None:
        verdict = "MET" if check["met"] else "NOT MET"
        lines += ["", f"target {verdict}: empire {check['empire_under']:,} under-provisioned minutes "
                  f"(<= {check['half_of_reactive_under']:,.0f}: {'yes' if check['under_provisioned_at_most_half'] else 'no'})"
                  f", {check['empire_replica_hours']:,.0f} replica-hours (<= {check['reactive_replica_hours']:,.0f}: "
                  f"{'yes' if check['replica_hours_not_more'] else 'no'})"]  # fmt: skip
    return "\n".join(lines)


def to_json(runs: dict[str, PolicyRun], trace: DemandTrace, settings: BacktestSettings, seconds: float) -> dict:
    policies = {}
    for name, run in runs.items():
        entry = run.summary()
        if name != "oracle":
            entry["policy"] = policy_for(name, settings).policy.model_dump(mode="json")["targets"][0]
        policies[name] = entry
    return {
        "trace": {"name": trace.name, "start": trace.start.isoformat(), "minutes": len(trace),
                  "counted_minutes": trace.valid_minutes, "step_seconds": 60},
        "settings": settings.as_dict(),
        "definitions": {
            "under_provisioned_minutes": "counted minutes whose demand > ready replicas x capacity",
            "unserved_demand": "sum over counted minutes of demand above ready capacity (requests)",
            "replica_hours": "requested replicas (starting ones included) summed over counted minutes / 60",
            "scaling_actions": "applied changes of the replica count",
        },
        "policies": policies,
        "target": target_check(runs),
        "wall_seconds": round(seconds, 2),
    }  # fmt: skip


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _hourly(values: np.ndarray, how: str) -> np.ndarray:
    """Per-hour mean or sum of a per-minute series (NaN-aware; NaN for an hour with no value)."""
    n = len(values) // 60 * 60
    blocks = values[:n].reshape(-1, 60)
    finite = np.isfinite(blocks).any(axis=1)
    out = np.full(len(blocks), np.nan)
    fn = np.nanmean if how == "mean" else np.nansum
    out[finite] = fn(blocks[finite], axis=1)
    return out


def _hourly_mean(values: np.ndarray) -> np.ndarray:
    return _hourly(values, "mean")


def write_plot(
    runs: dict[str, PolicyRun], trace: DemandTrace, settings: BacktestSettings, path: str | Path, fmt: str | None = None
) -> Path:
    """Left: the whole trace per hour (mean demand and ready capacity, red bars: short minutes per hour);
    right: one day per minute (reactive's worst), red minutes under-provisioned."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    n = len(trace)
    stamps = np.array([trace.start + timedelta(minutes=i) for i in range(n)])
    hours = stamps[: n // 60 * 60 : 60]
    demand = np.where(trace.ok, trace.values, np.nan)
    ready_of = {name: np.asarray(run.books.ready[:n], dtype=float) * settings.capacity for name, run in runs.items()}
    short_of = {name: trace.ok & (np.nan_to_num(trace.values) > ready + 1e-9) for name, ready in ready_of.items()}
    focus = short_of.get("reactive", next(iter(short_of.values())))
    day0 = int(np.argmax(np.add.reduceat(focus.astype(int), np.arange(0, n, 1440)))) * 1440
    zoom = slice(day0, min(n, day0 + 1440))
    fig, axes = plt.subplots(len(runs), 2, figsize=(15, 2.7 * len(runs) + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1]})  # fmt: skip
    for row, (name, run) in enumerate(runs.items()):
        s = run.books.summary()
        ready, short = ready_of[name], short_of[name]
        ax = axes[row][0]
        ax.fill_between(hours, _hourly_mean(ready), step="post", color="tab:blue", alpha=0.3, lw=0,
                        label="ready capacity (hourly mean)")  # fmt: skip
        ax.plot(hours, _hourly_mean(demand), color="0.2", lw=0.6, label="demand (hourly mean)")
        twin = ax.twinx()
        per_hour = np.nan_to_num(_hourly(short.astype(float), "sum"))
        twin.bar(hours, per_hour, width=1 / 24, align="edge", color="red", alpha=0.8, lw=0,
                 label="under-provisioned minutes per hour (right axis)")  # fmt: skip
        twin.set_ylim(0, 60)
        twin.set_ylabel("short min / h", color="red", fontsize=8)
        twin.tick_params(axis="y", labelcolor="red", labelsize=8)
        ax.set_title(f"{name}: {s['under_provisioned_minutes']:,} under-provisioned minutes, "
                     f"{s['replica_hours']:,.0f} replica-hours", loc="left", fontsize=10)  # fmt: skip
        if row == 0:
            handles = ax.get_legend_handles_labels()
            extra = twin.get_legend_handles_labels()
            ax.legend(handles[0] + extra[0], handles[1] + extra[1], loc="upper right", fontsize=8)
        ax.set_ylabel("requests / min")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax = axes[row][1]
        for a, b in _spans(short[zoom]):
            ax.axvspan(stamps[zoom][a], stamps[zoom][min(b, len(stamps[zoom]) - 1)], color="red", alpha=0.45, lw=0)
        ax.fill_between(stamps[zoom], ready[zoom], step="post", color="tab:blue", alpha=0.25, lw=0)
        ax.step(stamps[zoom], ready[zoom], where="post", color="tab:blue", lw=0.8, label="ready capacity")
        ax.plot(stamps[zoom], demand[zoom], color="0.25", lw=0.6, label="demand")
        ax.set_title(f"{stamps[day0]:%Y-%m-%d} per minute (reactive's worst day)", loc="left", fontsize=10)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
        for a in axes[row]:
            a.grid(alpha=0.3)
            a.set_ylim(bottom=0)
    fig.suptitle(f"empire backtest on {trace.name}: demand vs ready capacity", fontsize=12)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90, format=fmt)
    plt.close(fig)
    return out
