"""The status page's HTML: the document `data.gather` returns, as server-rendered HTML and inline SVG.

Why on the server and without a library: the page must work with no network beyond the agent
(no CDN, nothing to vendor and keep patched), and a chart of a few hundred points is a polyline.
The browser only swaps the fragment in every few seconds (`page.js`). PURE: a dict in, a string out;
every value is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

__all__ = ["chart", "fragment"]

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 720, 200, 56, 22, 10, 10


def _e(v: Any) -> str:
    return escape("-" if v is None else str(v))


def _num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return escape(str(v))


def _money(v: Any) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _size(n: Any) -> str:
    n = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _ts(s: Any) -> float | None:
    if not isinstance(s, str):
        return None
    try:
        return datetime.fromisoformat(s).timestamp()
    except ValueError:
        return None


def _clock(s: Any) -> str:
    t = _ts(s)
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M UTC") if t is not None else "-"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="empty">{escape(empty)}</p>'
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _error(section: Any) -> str | None:
    if isinstance(section, dict) and "error" in section and len(section) == 1:
        return f'<p class="error">unavailable: {_e(section["error"])}</p>'
    return None


# -- chart -------------------------------------------------------------------------------------------
def chart(points: Sequence[dict[str, Any]], unit: str = "") -> str:
    """Demand, ready capacity and the forecast band over the ring's hours, as inline SVG."""
    demand = [(t, p["demand"]) for p in points if (t := _ts(p.get("at"))) is not None and p.get("demand") is not None]
    capacity = [(t, p["capacity"]) for p in points
                if (t := _ts(p.get("at"))) is not None and p.get("capacity") is not None]  # fmt: skip
    band = [(t, p["low"], p["high"]) for p in points
            if (t := _ts(p.get("band_at"))) is not None and p.get("low") is not None and p.get("high") is not None]  # fmt: skip
    forecast = [(t, p["forecast"]) for p in points
                if (t := _ts(p.get("forecast_at"))) is not None and p.get("forecast") is not None]  # fmt: skip
    times = [t for t, _ in demand + capacity + forecast] + [t for t, *_ in band]
    if not demand and not capacity:
        return '<svg class="chart" data-points="0" viewBox="0 0 720 40"><text x="8" y="24">no data yet</text></svg>'
    t0, t1 = min(times), max(times)
    t1 = t1 if t1 > t0 else t0 + 60
    values = [v for _, v in demand + capacity + forecast] + [h for *_, h in band]
    top = max([*values, 1e-9]) * 1.1
    iw, ih = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(t: float) -> float:
        return PAD_L + (t - t0) / (t1 - t0) * iw

    def y(v: float) -> float:
        return PAD_T + ih - max(0.0, v) / top * ih

    def line(pts: list[tuple[float, float]], cls: str, step: bool = False) -> str:
        if not pts:
            return ""
        coords = []
        for i, (t, v) in enumerate(sorted(pts)):
            if step and i:
                coords.append(f"{x(t):.1f},{coords[-1].split(',')[1]}")
            coords.append(f"{x(t):.1f},{y(v):.1f}")
        return f'<polyline class="{cls}" points="{" ".join(coords)}"/>'

    parts = [f'<svg class="chart" data-points="{len(demand)}" viewBox="0 0 {W} {H}" role="img" '
             f'aria-label="demand, ready capacity and forecast">']  # fmt: skip
    for frac in (0.0, 0.5, 1.0):
        yy = PAD_T + ih - frac * ih
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{yy:.1f}" y2="{yy:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{PAD_L - 6}" y="{yy + 4:.1f}" text-anchor="end">{_num(top * frac, 3)}</text>'
        )
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        t = t0 + frac * (t1 - t0)
        label = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
        parts.append(f'<text class="axis" x="{x(t):.1f}" y="{H - 6}" text-anchor="{anchor}">{label}</text>')
    if band:
        band.sort()
        upper = " ".join(f"{x(t):.1f},{y(h):.1f}" for t, _, h in band)
        lower = " ".join(f"{x(t):.1f},{y(lo):.1f}" for t, lo, _ in reversed(band))
        parts.append(f'<polygon class="band" points="{upper} {lower}"/>')
    parts.append(line(capacity, "capacity", step=True))
    parts.append(line(demand, "demand"))
    parts.append(line(forecast, "forecast"))
    parts.append("</svg>")
    legend = ('<div class="legend"><span class="k demand"></span>demand<span class="k capacity"></span>ready capacity'
              '<span class="k forecast"></span>forecast<span class="k band"></span>forecast band'
              f'{f" <em>({escape(unit)})</em>" if unit else ""}</div>')  # fmt: skip
    return "".join(parts) + legend


# -- sections ----------------------------------------------------------------------------------------
def _header(data: dict[str, Any]) -> str:
    s = data.get("status") or {}
    areas = s.get("areas") or {}
    bad = [f"{k}: {v}" for k, v in areas.items() if v != "ok"]
    db = s.get("state_db") or {}
    sim = s.get("simulation")
    facts = [
        ("time", _clock(data.get("now"))), ("leader", "yes" if s.get("leader") else "no (standby)"),
        ("policy", s.get("policy_version")), ("ticks", s.get("ticks")), ("metrics", s.get("metric_source")),
        ("cluster", s.get("cluster")), ("state DB", "up" if db.get("up", True) else f"DOWN: {db.get('message')}"),
        ("dry run", "yes" if s.get("dry_run") else "no"),
    ]  # fmt: skip
    if isinstance(sim, dict):
        facts.append(("simulation", f"x{_num(sim.get('speed'))} on {sim.get('trace')}"))
    items = "".join(f"<div><dt>{escape(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    warn = f'<p class="error">degraded: {escape("; ".join(bad))}</p>' if bad else ""
    return f'<section id="overview" data-section="overview"><dl class="facts">{items}</dl>{warn}</section>'


def _target(name: str, t: dict[str, Any], st: dict[str, Any]) -> str:
    sig = t.get("signal") or {}
    unit = f"{sig.get('name')}, target {_num(sig.get('target'))} per replica" if sig else ""
    hist = t.get("history") or []
    last = hist[-1] if hist else {}
    reasons = ", ".join(st.get("reasons") or []) or "-"
    head = (f'<h3>{escape(name)}</h3><p class="now">replicas <b>{_e(st.get("current"))}</b> '
            f'(ready {_e(last.get("ready"))}, desired {_e(st.get("desired"))}, {_e(t.get("min_replicas"))}'
            f'&ndash;{_e(t.get("max_replicas"))}); demand {_num(last.get("demand"))} of capacity '
            f'{_num(last.get("capacity"))}; <span class="reasons">{escape(reasons)}</span></p>')  # fmt: skip
    decisions = t.get("decisions")
    err = _error(decisions)
    if err:
        body = err
    else:
        body = "".join(f'<pre class="decision">{escape(d.get("explain", ""))}</pre>' for d in decisions or [])
        body = body or '<p class="empty">no decision journaled yet</p>'
    return (
        f'<article class="target" data-target="{escape(name)}">{head}{chart(hist, unit)}'
        f"<h4>latest decisions</h4>{body}</article>"
    )


def _targets(data: dict[str, Any]) -> str:
    st = (data.get("status") or {}).get("targets") or {}
    cards = "".join(_target(n, t, st.get(n) or {}) for n, t in (data.get("targets") or {}).items())
    return f'<section id="targets" data-section="targets"><h2>Targets</h2>{cards}</section>'


def _alerts(data: dict[str, Any]) -> str:
    alerts, silences = data.get("alerts"), data.get("silences")
    a_html = _error(alerts) or _table(
        ("alert", "severity", "target", "summary", "since", "state"),
        ([escape(a["rule"]), f'<span class="sev {escape(a["severity"])}">{escape(a["severity"])}</span>',
          _e(a["labels"].get("target")), _e(a["summary"]), _clock(a["since"]),
          f'<span class="{escape(a["state"])}">{escape(a["state"])}</span>'
          + (f" at {_clock(a['ended'])}" if a.get("ended") else "")] for a in alerts or []),
        "no alert firing, none resolved in the last 6 hours",
    )  # fmt: skip
    s_html = _error(silences) or _table(
        ("silence", "matchers", "state", "ends", "by", "comment"),
        ([_e(s["id"]), _e(", ".join(s["matchers"])), _e(s["state"]), _clock(s["ends_at"]), _e(s["created_by"]),
          _e(s["comment"])] for s in silences or []),
        "no silence",
    )  # fmt: skip
    rules = ((data.get("status") or {}).get("alerting") or {}).get("rules") or []
    r_html = _table(("rule", "state", "value", "note"),
                    ([_e(r.get("rule")), _e(r.get("state")), _num(r.get("value")), _e(r.get("note"))] for r in rules),
                    "no alert rule")  # fmt: skip
    return (
        f'<section id="alerts" data-section="alerts"><h2>Alerts</h2><div id="firing">{a_html}</div>'
        f"<h4>silences</h4>{s_html}<h4>rules</h4>{r_html}</section>"
    )


def _bar(spent: Any, budget: Any) -> str:
    if not budget:
        return f"{_money(spent)} (no budget)"
    frac = max(0.0, min(1.0, (spent or 0) / budget))
    return f'<span class="bar"><span style="width:{frac * 100:.0f}%"></span></span> {_money(spent)} of {_money(budget)}'


def _pools(data: dict[str, Any]) -> str:
    p = data.get("pools")
    err = _error(p)
    if err or not isinstance(p, dict):
        return f'<section id="pools" data-section="pools"><h2>Generation pools</h2>{err or ""}</section>'
    accounts = _table(
        ("account", "limit", "in flight", "state"),
        ([f"{escape(a['provider'])}/{escape(a['account'])}",
          f"{_num(a['requests_per_minute'])}/min, {_e(a['max_concurrent'])} at once",
          f"{_e(a['in_flight'])}",
          f'<span class="state {escape(a["state"])}">{escape(a["state"].replace("_", " "))}</span>'
          + (f" until {_clock(a['until'])}" if a.get("until") else "")] for a in p.get("accounts") or []),
        "no provider account",
    )  # fmt: skip
    b = p.get("budget") or {}
    jobs = ", ".join(f"{n} {s}" for s, n in sorted((p.get("jobs") or {}).items())) or "none"
    providers = _table(("provider", "today", "this month"),
                       ([_e(x["name"]), _bar(x["spend_today"], x["daily"]), _bar(x["spend_month"], x["monthly"])]
                        for x in p.get("providers") or []), "no provider")  # fmt: skip
    return (
        f'<section id="pools" data-section="pools"><h2>Generation pools</h2>'
        f'<p>queue depth <b id="queue-depth">{_e(p.get("queued"))}</b> waiting; jobs: {escape(jobs)}</p>'
        f"<p>spend today {_bar(p.get('spend_today'), b.get('daily'))}<br>"
        f"this month {_bar(p.get('spend_month'), b.get('monthly'))}</p>{accounts}{providers}</section>"
    )


def _tiers(data: dict[str, Any]) -> str:
    rows = data.get("tiers")
    err = _error(rows)
    body = err or _table(
        ("tier", "objects", "size", "cost / month"),
        ([_e(r["tier"]), _num(r["objects"]), _size(r["bytes"]), _money(r["cost_per_month"])] for r in rows or []),
        "no storage tier",
    )  # fmt: skip
    if not err and rows:
        total = sum(r["cost_per_month"] or 0 for r in rows)
        n = sum(r["objects"] for r in rows)
        body += f'<p>total <b id="tier-objects">{n}</b> objects, {_size(sum(r["bytes"] for r in rows))}, {_money(total)} a month</p>'
    return f'<section id="tiers" data-section="tiers"><h2>Storage tiers</h2>{body}</section>'


def _personas(data: dict[str, Any]) -> str:
    rows = data.get("personas")
    body = _error(rows) or _table(
        ("persona", "tracks", "jobs", "spend", "revenue", "ROI"),
        ([_e(r["persona"]), _num(r["tracks"]), _num(r["jobs"]), _money(r["spend"]), _money(r["revenue"]),
          f"{r['roi'] * 100:+.0f} %" if r.get("roi") is not None else "-"] for r in rows or []),
        "no persona",
    )  # fmt: skip
    return (
        f'<section id="personas" data-section="personas"><h2>Revenue and ROI per persona (30 days)</h2>{body}</section>'
    )


def fragment(data: dict[str, Any]) -> str:
    """The page's live part (what `page.js` swaps in)."""
    return "".join(f(data) for f in (_header, _alerts, _targets, _pools, _tiers, _personas))
