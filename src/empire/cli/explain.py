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

from empire.agent.explaining import render, render_persona
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
