"""`empire explain TARGET [--last N]`: why the agent did what it did, from the journal.

TARGET is a scaling target (its decisions) or a persona (`persona/NAME`, or a bare name with no
decisions: its generation actions, with the spending evidence when the planner spends by returns).

Reads the decisions table (and the actions journaled for them) of the state database, so it works
while the daemon runs, after it stopped, and on another machine pointed at the same database.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from empire.cli.common import count
from empire.errors import NotFoundError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="print a target's recent decisions with every reason and clamp",
        description="Print the recent decisions for TARGET from the state database, newest first.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire explain generator
  empire explain api --last 20
  empire explain api --format json | jq '.[0].reasons'
  empire explain persona/luna-waves      # its generation: reasons, and with spending by returns the evidence""",
    )
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--last", type=count(1, 10_000), default=5, metavar="N", help="how many decisions (default 5)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=explain)


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


def explain(args: argparse.Namespace) -> int:
    from empire.cli.common import with_database
    from empire.config.urls import mask_url
    from empire.state.store import SqlStateStore

    if args.last < 1:
        from empire.errors import ConfigError

        raise ConfigError("--last must be at least 1")

    async def go(db: Any) -> tuple[list[Any], dict[int, list[Any]]]:
        store = SqlStateStore(db)
        if args.target.startswith("persona/"):
            return [], {}
        decisions = await store.recent_decisions(args.target, limit=args.last)
        if not decisions and await store.recent_actions(f"persona/{args.target}", limit=1):
            return [], {}  # a persona named without the prefix
        acts: dict[int, list[Any]] = {}
        for a in await store.recent_actions(args.target, limit=max(50, args.last * 4)):
            if a.decision_id is not None:
                acts.setdefault(a.decision_id, []).append(a)
        if not decisions:
            known = sorted({d.target for d in await store.recent_decisions(limit=500)})
            raise NotFoundError(
                f"no decisions recorded for target {args.target!r} "
                f"(targets with decisions: {', '.join(known) or 'none yet; is empire run running?'})"
            )
        return decisions, acts

    decisions, acts = with_database(go, readonly=True)
    if not decisions:  # a persona: its generation actions

        async def persona(db: Any) -> list[Any]:
            subject = args.target if args.target.startswith("persona/") else f"persona/{args.target}"
            found = await SqlStateStore(db).recent_actions(subject, limit=args.last * 4)
            return [a for a in found if a.kind == "generate"][: args.last]

        actions = with_database(persona, readonly=True)
        if not actions:
            raise NotFoundError(f"no generation actions journaled for {args.target!r} (is empire run running?)")
        if args.format == "json":
            print(json.dumps([{"at": a.created_at.isoformat(), "state": a.state.value, "reason": a.reason,
                               "params": a.params, "error": a.error} for a in actions], indent=2))  # fmt: skip
            return 0
        print(f"{args.target}: last {len(actions)} generation action(s), newest first")
        print("\n".join(render_persona(actions)))
        return 0
    if args.format == "json":
        out = [
            {"at": d.at.isoformat(), "current": d.current, "recommended": d.recommended, "desired": d.desired,
             "reasons": list(d.reasons), "details": d.details, "dry_run": d.dry_run, "policy_version": d.policy_version,
             "actions": [{"kind": a.kind, "state": a.state.value, "params": a.params, "error": a.error}
                         for a in acts.get(d.id or -1, [])]}
            for d in decisions
        ]  # fmt: skip
        print(mask_url(json.dumps(out, indent=2)))
        return 0
    print(f"{args.target}: last {len(decisions)} decision(s), newest first")
    print(mask_url("\n".join(render(decisions, acts))))  # also rows journaled before URLs were masked
    return 0
