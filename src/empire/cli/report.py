"""`empire report [--period 30d] [--plot FILE.png]`: spend vs revenue and return per dollar, per persona
and per platform, and trend capture (what tracks planned on a trend boost earn vs the rest).

Reads the state DB (works while the daemon runs, or after); the numbers behind the planner's
`returns` spending, for a person to check.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from empire.cli.common import check_output_path, replaced_when_done
from empire.errors import ConfigError

PLOT_FORMATS = ("png", "pdf", "svg")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="spend vs revenue and return per dollar per persona and platform over a period",
        description="Per persona over the period: generation spend (jobs finished), tracks made, their revenue "
        "to date and the return per dollar; totals; per platform and persona x platform: views, engagement, "
        "revenue (performance figures), spend and return per dollar; trend capture; optionally a chart.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire report                          the last 30 days
  empire report --period 7d --plot out/report.png
  empire report --format json | jq '.personas[] | select(.roi < 1)'

Revenue arrives weeks after the spend: the tracks of the last weeks have not earned what they will.""",
    )
    p.add_argument("--period", default="30d", help="how far back (default 30d)")
    p.add_argument("--plot", metavar="FILE.png", help="spend vs revenue per persona (png, pdf or svg)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=report)


PAIRS = 50  # persona x platform rows shown at most (the best by revenue): a report, not a dump


def by_platform(books: dict[tuple[str, str], dict[str, float]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """PURE: per platform and per (persona, platform) the revenue, views, engagement, spend, ROI;
    platforms by revenue, pairs the best `PAIRS` by revenue."""

    def row(b: dict[str, float], **key: str) -> dict[str, Any]:
        roi = b["revenue"] / b["spend"] if b["spend"] > 0 else None
        return {**key, "tracks": int(b["tracks"]), "views": int(b["views"]), "engagement": int(b["engagement"]),
                "revenue": round(b["revenue"], 6), "spend": round(b["spend"], 6),
                "roi": None if roi is None else round(roi, 4)}  # fmt: skip

    sums: dict[str, dict[str, float]] = {}
    for (_persona, platform), b in books.items():
        acc = sums.setdefault(platform, dict.fromkeys(("tracks", "views", "engagement", "revenue", "spend"), 0.0))
        for k in acc:
            acc[k] += b[k]
    platforms = sorted((row(b, platform=p) for p, b in sums.items()), key=lambda r: (-r["revenue"], r["platform"]))
    pairs = sorted((row(b, persona=pe, platform=pl) for (pe, pl), b in books.items()),
                   key=lambda r: (-r["revenue"], r["persona"], r["platform"]))[:PAIRS]  # fmt: skip
    return platforms, pairs


def capture(trend: dict[str, dict[str, float]]) -> dict[str, Any]:
    """PURE: trend capture = revenue per track planned on a trend boost over revenue per track of the rest."""
    b, r = trend["boosted"], trend["rest"]
    ratio = b["per_track"] / r["per_track"] if b["tracks"] and r["tracks"] and r["per_track"] > 0 else None
    return {"boosted": {k: round(v, 6) for k, v in b.items()}, "rest": {k: round(v, 6) for k, v in r.items()},
            "ratio": None if ratio is None else round(ratio, 4)}  # fmt: skip


def summarize(books: dict[str, dict[str, float]]) -> dict[str, Any]:
    """PURE: rows sorted by return per dollar (best first; no spend: last), and the totals."""
    rows = []
    for persona, b in books.items():
        roi = b["revenue"] / b["spend"] if b["spend"] > 0 else None
        rows.append({"persona": persona, "spend": round(b["spend"], 6), "jobs": int(b["jobs"]),
                     "tracks": int(b["tracks"]), "revenue": round(b["revenue"], 6),
                     "roi": None if roi is None else round(roi, 4)})  # fmt: skip
    rows.sort(key=lambda r: (r["roi"] is None, -(r["roi"] or 0.0), r["persona"]))
    spend, revenue = sum(b["spend"] for b in books.values()), sum(b["revenue"] for b in books.values())
    return {"personas": rows, "total": {"spend": round(spend, 6), "revenue": round(revenue, 6),
                                        "roi": round(revenue / spend, 4) if spend > 0 else None}}  # fmt: skip


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.2f}"


def render(summary: dict[str, Any], period: str) -> list[str]:
    lines = [f"last {period}: spend vs revenue per persona (revenue to date of the period's tracks)",
             f"{'persona':<24} {'spend':>10} {'jobs':>6} {'tracks':>6} {'revenue':>10} {'per $':>7}"]  # fmt: skip
    for r in summary["personas"]:
        lines.append(f"{r['persona']:<24} {_fmt(r['spend']):>10} {r['jobs']:>6} {r['tracks']:>6} "
                     f"{_fmt(r['revenue']):>10} {_fmt(r['roi']):>7}")  # fmt: skip
    t = summary["total"]
    lines.append(f"{'total':<24} {_fmt(t['spend']):>10} {'':>6} {'':>6} {_fmt(t['revenue']):>10} {_fmt(t['roi']):>7}")
    if summary.get("platforms"):
        lines += [
            "",
            "per platform (performance figures; spend: publishing there + an even share of the generation)",
            f"{'platform':<24} {'spend':>10} {'tracks':>6} {'views':>10} {'engage':>8} {'revenue':>10} {'per $':>7}",
        ]
        for r in summary["platforms"]:
            lines.append(f"{r['platform']:<24} {_fmt(r['spend']):>10} {r['tracks']:>6} {r['views']:>10} "
                         f"{r['engagement']:>8} {_fmt(r['revenue']):>10} {_fmt(r['roi']):>7}")  # fmt: skip
        lines += [
            "",
            f"persona x platform (the best {PAIRS} by revenue)",
            f"{'persona':<24} {'platform':<12} {'spend':>10} {'revenue':>10} {'per $':>7}",
        ]
        for r in summary["persona_platforms"]:
            lines.append(f"{r['persona']:<24} {r['platform']:<12} {_fmt(r['spend']):>10} {_fmt(r['revenue']):>10} "
                         f"{_fmt(r['roi']):>7}")  # fmt: skip
    if "trend_capture" in summary:
        c = summary["trend_capture"]
        b, r = c["boosted"], c["rest"]
        lines += [
            "",
            f"trend capture: {int(b['tracks'])} tracks planned on a trend boost earned {_fmt(b['per_track'])} "
            f"a track, the other {int(r['tracks'])} {_fmt(r['per_track'])} (x{_fmt(c['ratio'])})",
        ]
    return lines


def write_plot(summary: dict[str, Any], path: Path, period: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["personas"][:40]  # the best 40 by return per dollar: a chart, not a table
    names = [r["persona"] for r in rows]
    x = range(len(rows))
    platforms = summary.get("platforms") or []
    fig, axes = plt.subplots(2 if platforms else 1, 1, figsize=(max(6.0, 0.5 * len(rows) + 2), 9 if platforms else 4.5),
                             squeeze=False)  # fmt: skip
    ax = axes[0][0]
    ax.bar([i - 0.2 for i in x], [r["spend"] for r in rows], width=0.4, label="spend", color="tab:red")
    ax.bar([i + 0.2 for i in x], [r["revenue"] for r in rows], width=0.4, label="revenue to date", color="tab:green")
    ax.set_xticks(list(x), names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("currency units")
    ax.set_title(f"Spend vs revenue per persona, last {period} (total return per dollar: "
                 f"{_fmt(summary['total']['roi'])})")  # fmt: skip
    ax.legend()
    if platforms:
        px = range(len(platforms))
        ax2 = axes[1][0]
        ax2.bar([i - 0.2 for i in px], [r["spend"] for r in platforms], width=0.4, label="spend", color="tab:red")
        ax2.bar([i + 0.2 for i in px], [r["revenue"] for r in platforms], width=0.4, label="revenue", color="tab:green")
        ax2.set_xticks(list(px), [f"{r['platform']}\n{_fmt(r['roi'])} per $" for r in platforms], fontsize=8)
        c = summary.get("trend_capture") or {}
        ax2.set_title(f"Per platform (trend capture: x{_fmt(c.get('ratio'))} revenue per track on a boost)")
        ax2.legend()
    fig.tight_layout()
    with replaced_when_done(path, "--plot") as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower())
    plt.close(fig)


def report(args: argparse.Namespace) -> int:
    from empire.cli.common import with_database
    from empire.policies.durations import parse_duration
    from empire.state.business import persona_books, platform_books, trend_capture

    try:
        period = parse_duration(args.period)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--period: {exc}") from None
    if period <= timedelta(0):
        raise ConfigError("--period must be longer than 0")
    plot = check_output_path(args.plot, "--plot", PLOT_FORMATS) if args.plot else None
    since = datetime.now(UTC) - period

    async def read(db: Any) -> tuple[Any, Any, Any]:
        return await persona_books(db, since), await platform_books(db, since), await trend_capture(db, since)

    personas, platforms, trend = with_database(read, readonly=True)
    summary = summarize(personas)
    summary["platforms"], summary["persona_platforms"] = by_platform(platforms)
    summary["trend_capture"] = capture(trend)
    if plot is not None:
        write_plot(summary, plot, args.period)
    if args.format == "json":
        print(json.dumps({"period": args.period, "since": since.isoformat(), **summary}, indent=2))
    else:
        print("\n".join(render(summary, args.period)))
        if plot is not None:
            print(f"chart: {plot}")
    return 0
