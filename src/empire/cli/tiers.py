"""`empire tiers plan|apply|status`: what would move and why, move it now, and what each tier holds.

`plan` runs the same SQL selection as the agent's sweep and changes nothing. `apply` first
finishes or rolls back any interrupted move, then sends the planned moves through the journaling
action runner as `Retier` actions (so they are in the action journal with their reasons, exactly
as when the agent moves them), and honours the policy's concurrency and bytes/s budget.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from empire.cli.common import count


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tiers",
        help="plan, apply and inspect storage tiering",
        description="Storage tiers (hot -> archive): where content should live and what it costs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire tiers status                 bytes, objects and monthly cost per tier
  empire tiers plan                   the moves that pay for themselves, best first, with reasons
  empire tiers plan --limit 100 --format json
  empire tiers apply --dry-run        journal the moves as skipped, move nothing
  empire tiers apply --limit 50       move the 50 best-paying objects now""",
    )
    psub = p.add_subparsers(dest="tiers_command", metavar="SUBCOMMAND")
    psub.required = True
    for name, helptext, func in (
        ("plan", "show what would move and why, with the projected monthly saving", plan),
        ("apply", "recover interrupted moves, then move what the plan says", apply),
        ("status", "bytes and objects per tier and their cost per month", status),
    ):
        s = psub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        s.add_argument("--policy", metavar="FILE", help="policy YAML (default: EMPIRE_POLICY_FILE or the example)")
        s.add_argument("--format", choices=("text", "json"), default="text")
        if name != "status":
            s.add_argument(
                "--limit", type=count(1, 1_000_000), default=None, help="at most N moves (default: max_moves_per_sweep)"
            )
        if name == "apply":
            s.add_argument("--dry-run", action="store_true", help="journal the moves as skipped; move nothing")
        s.set_defaults(func=func)


def _money(x: float) -> str:
    return f"${x:,.4f}" if abs(x) < 100 else f"${x:,.2f}"


def _size(n: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def plan(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.tiering.context import open_tiering
    from empire.config.settings import load_settings

    async def go() -> dict[str, Any]:
        async with open_tiering(load_settings(), args.policy, readonly=True) as tc:
            now = tc.clock.now()
            limit = args.limit or tc.policy.max_moves_per_sweep
            moves = await tc.inventory.plan(tc.policy, now, limit)
            summary = await tc.inventory.plan_summary(tc.policy, now)
            return {
                "at": now.isoformat(), "horizon_days": tc.policy.horizon.total_seconds() / 86400,
                "summary": [s.__dict__ for s in summary],
                "total": {"objects": sum(s.objects for s in summary), "bytes": sum(s.bytes for s in summary),
                          "monthly_saving": sum(s.monthly_saving for s in summary)},
                "moves": [{"id": m.object_id, "from": m.from_tier, "to": m.to_tier, "size": m.size,
                           "reason": m.reason.value, "monthly_saving": m.monthly_saving, "move_cost": m.move_cost}
                          for m in moves],
            }  # fmt: skip

    out = anyio.run(go)
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    total = out["total"]
    if not total["objects"]:
        print("nothing to move: every object is in the tier its rules want, or moving it would not pay")
        return 0
    print(f"{total['objects']} objects ({_size(total['bytes'])}) should move; projected saving "
          f"{_money(total['monthly_saving'])}/month (each move pays back within {out['horizon_days']:g} days)")  # fmt: skip
    print(f"\n{'from':<10} {'to':<10} {'objects':>9} {'size':>12} {'saving/month':>14}")
    for s in out["summary"]:
        print(f"{s['from_tier']:<10} {s['to_tier']:<10} {s['objects']:>9} {_size(s['bytes']):>12} "
              f"{_money(s['monthly_saving']):>14}")  # fmt: skip
    shown = out["moves"]
    print(f"\n{'object':<32} {'move':<18} {'size':>10} {'saving/month':>13} {'cost':>10}  why")
    for m in shown:
        print(f"{m['id'][:32]:<32} {m['from'] + ' -> ' + m['to']:<18} {_size(m['size']):>10} "
              f"{_money(m['monthly_saving']):>13} {_money(m['move_cost']):>10}  {m['reason']}")  # fmt: skip
    if len(shown) < total["objects"]:
        print(f"... and {total['objects'] - len(shown)} more (--limit)")
    return 0


def apply(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.journal import ActionRunner
    from empire.agent.monitor import Monitor
    from empire.agent.tiering.context import open_tiering
    from empire.agent.tiering.executor import RetierExecutor
    from empire.agent.tiering.sweep import TieringSweep
    from empire.agent.types import Retier
    from empire.config.settings import load_settings
    from empire.state.store import SqlStateStore

    async def go() -> tuple[Any, list[str]]:
        settings = load_settings()
        async with open_tiering(settings, args.policy) as tc:
            policy = tc.policy
            if args.limit:
                policy = policy.model_copy(update={"max_moves_per_sweep": args.limit})
            tc.mover.set_policy(policy)
            dry_run = args.dry_run or tc.dry_run_policy
            runner = ActionRunner(SqlStateStore(tc.db), {Retier: RetierExecutor(tc.mover, tc.inventory)}, tc.clock,
                                  Monitor(), dry_run=dry_run,
                                  replica=f"cli:{settings.replica_id}", timeout=24 * 3600)  # fmt: skip
            lines: list[str] = []

            async def run(action: Retier, now: Any) -> Any:
                out = await runner.run(action, at=now)
                note = f": {out.error}" if out.error else ""
                lines.append(f"{action.object_id}: {action.from_tier} -> {action.to_tier} {out.status.value}{note}")
                return out

            sweep = TieringSweep(tc.inventory, tc.mover, run, lambda: policy, recover=lambda: not dry_run)
            report = await sweep(tc.clock.now())
            return report, lines

    report, lines = anyio.run(go)
    if args.format == "json":
        print(json.dumps({**report.as_dict(), "moves": lines}, indent=2))
    else:
        if report.recovered:
            print(f"recovered {report.recovered} interrupted move(s)")
        for line in lines:
            print(line)
        print(f"{report.planned} planned, results {report.results or '{}'}; "
              f"projected saving {_money(report.monthly_saving)}/month")  # fmt: skip
    return 1 if report.results.get("failed") else 0


def status(args: argparse.Namespace) -> int:
    import anyio
    from sqlalchemy import func, select

    from empire.agent.tiering.context import open_tiering
    from empire.agent.tiering.journal import UNFINISHED_STEPS
    from empire.config.settings import load_settings
    from empire.state import tables as t

    async def go() -> dict[str, Any]:
        async with open_tiering(load_settings(), args.policy, readonly=True) as tc:
            usage = {u.tier: u for u in await tc.inventory.usage()}
            async with tc.db.connect() as conn:
                unfinished = (await conn.execute(
                    select(func.count()).select_from(t.moves).where(t.moves.c.step.in_(UNFINISHED_STEPS)))).scalar_one()  # fmt: skip
            rows = []
            for tier in tc.policy.tiers:
                u = usage.pop(tier.name, None)
                b = u.bytes if u else 0
                rows.append({"tier": tier.name, "objects": u.objects if u else 0, "bytes": b,
                             "cost_per_month": b / 1024**3 * tier.cost_per_gb_month,
                             "moving": u.moving if u else 0, "quarantined": u.quarantined if u else 0})  # fmt: skip
            for name, u in usage.items():  # tiers the policy no longer names
                rows.append({"tier": name, "objects": u.objects, "bytes": u.bytes, "cost_per_month": None,
                             "moving": u.moving, "quarantined": u.quarantined})  # fmt: skip
            return {"backend": repr(tc.backend), "tiers": rows, "unfinished_moves": int(unfinished)}

    out = anyio.run(go)
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    print(f"backend: {out['backend']}")
    print(f"{'tier':<10} {'objects':>9} {'size':>12} {'cost/month':>12} {'moving':>7} {'quarantined':>12}")
    for r in out["tiers"]:
        cost = _money(r["cost_per_month"]) if r["cost_per_month"] is not None else "not in policy"
        print(f"{r['tier']:<10} {r['objects']:>9} {_size(r['bytes']):>12} {cost:>12} {r['moving']:>7} "
              f"{r['quarantined']:>12}")  # fmt: skip
    total = sum(r["cost_per_month"] or 0 for r in out["tiers"])
    print(f"{'total':<10} {sum(r['objects'] for r in out['tiers']):>9} "
          f"{_size(sum(r['bytes'] for r in out['tiers'])):>12} {_money(total):>12}")  # fmt: skip
    if out["unfinished_moves"]:
        print(f"{out['unfinished_moves']} unfinished move(s): 'empire tiers apply' (or the agent) recovers them")
    return 0
