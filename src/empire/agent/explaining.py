"""How a decision reads to a person: the lines `empire explain` prints and the status page shows.

One rendering for both, so the page at `/` explains a decision in the very words of the CLI. PURE:
it formats journal records (`DecisionRecord`, `ActionRecord`), reads nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["render", "render_persona"]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def render(decisions: list[Any], actions: dict[int, list[Any]]) -> list[str]:
    lines = []
    for d in decisions:
        flags = " [dry run]" if d.dry_run else ""
        lines.append(
            f"{d.at.strftime('%Y-%m-%d %H:%M:%S')}Z  current {_fmt(d.current)}  recommended {_fmt(d.recommended)}"
            f"  desired {_fmt(d.desired)}{flags}  policy {d.policy_version or '-'}"
        )
        lines.append(f"    reasons: {', '.join(d.reasons) or '-'}")
        det = d.details or {}
        for name, s in (det.get("signals") or {}).items():
            parts = [f"{_fmt(s.get('value'))} vs target {_fmt(s.get('target'))} ({s.get('type')})"]
            if s.get("status") != "ok":
                parts.append(f"status {s.get('status')}")
            if s.get("replicas") is not None:
                parts.append(f"-> {s['replicas']} replicas")
            if s.get("within_tolerance"):
                parts.append("within tolerance")
            if s.get("staleness") is not None:
                parts.append(f"age {_fmt(s['staleness'])}s")
            lines.append(f"    signal {name}: " + ", ".join(parts))
        if det.get("conflicts"):
            lines.append(f"    conflict: {', '.join(det['conflicts'])} also targets the workload: not scaled "
                         f"(would scale to {_fmt(det.get('would_scale_to'))}); remove one of them")  # fmt: skip
        if "forecast" in det:
            f = det["forecast"]
            lines.append(f"    forecast {f.get('signal')}: p{100 * f.get('quantile', 0):g} "
                         f"{_fmt(f.get('value'))} in {_fmt(f.get('horizon_seconds'))}s -> {_fmt(f.get('replicas'))} replicas")  # fmt: skip
            guard = f.get("guard") or {}
            if guard or f.get("gate"):
                state = guard.get("state") or f.get("gate")
                acts = "acts" if state == "trusted" else "not acted on (reactive scaling decides)"
                why = f"; {guard['why']}" if guard.get("why") else ""
                variant = f", variant {guard['variant']}" if guard.get("variant") else ""
                lines.append(f"    guard: {state}{variant}: {acts}{why}")
        st = det.get("stabilization")
        if st:
            bits = [f"window min(up) {_fmt(st.get('window_up_min'))}", f"max(down) {_fmt(st.get('window_down_max'))}",
                    f"stabilized {_fmt(st.get('stabilized'))}"]  # fmt: skip
            if "scale_up_limit" in st:
                bits.append(f"rate limit up to {st['scale_up_limit']}")
            if "scale_down_limit" in st:
                bits.append(f"rate limit down to {st['scale_down_limit']}")
            if "scale_down_window" in st:
                bits.append(f"scale-down window {_fmt(st['scale_down_window'])}s (the trusted forecast's)")
            if st.get("rule"):
                bits = [st["rule"]]
            lines.append("    stabilization: " + ", ".join(bits))
        if det.get("source_failures"):
            lines.append(f"    metric source failures in a row: {det['source_failures']} ({_fmt(det.get('error'))})")
        for a in actions.get(d.id or -1, []):
            err = f": {a.error}" if a.error else ""
            lines.append(f"    action {a.kind} {a.params.get('current')} -> {a.params.get('replicas')}: {a.state}{err}")
    return lines


def render_persona(actions: list[Any]) -> list[str]:
    """A persona's generation actions: what was planned, why, and (spending by returns) on what evidence."""
    lines = []
    for a in actions:
        p = a.params or {}
        err = f": {a.error}" if a.error else ""
        what = f"held back {p.get('count')} track(s)" if p.get("held") else f"generate {p.get('count')} track(s)"
        lines.append(f"{a.created_at.strftime('%Y-%m-%d %H:%M:%S')}Z  {what} (window {p.get('batch') or '-'}, "
                     f"from #{p.get('first', 0)}): {a.state.value}{err}")  # fmt: skip
        lines.append(f"    reasons: {', '.join(p.get('reasons') or [a.reason])}")
        for g in p.get("allocation") or []:
            if g.get("reason") == "floor":
                lines.append(f"    floor: {g.get('count')} x {g.get('genre')} (its least-observed genre; "
                             f"expected {_fmt(g.get('expected'))} per $ +- {_fmt(g.get('uncertainty'))})")  # fmt: skip
            else:
                boost = f", trend boost x{_fmt(g.get('boost'))}" if (g.get("boost") or 1) > 1 else ""
                lines.append(f"    expected return: {g.get('count')} x {g.get('genre')}: {_fmt(g.get('expected'))} "
                             f"per $ +- {_fmt(g.get('uncertainty'))} (drawn {_fmt(g.get('draw'))}{boost})")  # fmt: skip
    return lines
