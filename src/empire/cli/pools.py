"""`empire pools status|run`: the provider pools' limits, load and spend; run the dispatcher alone.

`status` reads the policy and the state DB (and Redis, when configured, for the shared slots in
use): it works while the daemon runs. `run` runs only the generation dispatcher (no control
loop): for a dedicated generation worker, or to drain the queue (`--drain`) and exit.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pools",
        help="generation pools: status, or run the dispatcher alone",
        description="Provider account pools (requests/min, concurrency, cost, budgets) and their load.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  empire pools status                       accounts, in-flight jobs, today's spend against the budgets
  empire pools status --format json
  empire pools run --drain                  run queued jobs until none is left, then exit
  EMPIRE_REDIS_URL=redis://... empire pools run    a replica sharing account limits through Redis""",
    )
    psub = p.add_subparsers(dest="pools_command", metavar="SUBCOMMAND")
    psub.required = True
    st = psub.add_parser("status", help="limits, in-flight jobs, spend and queue depth per provider and account")
    st.add_argument("--policy", metavar="FILE", help="policy YAML (default: EMPIRE_POLICY_FILE or the example)")
    st.add_argument("--format", choices=("text", "json"), default="text")
    st.set_defaults(func=status)
    r = psub.add_parser("run", help="run the generation dispatcher until SIGTERM (or until drained)")
    r.add_argument("--policy", metavar="FILE", help="policy YAML (default: EMPIRE_POLICY_FILE or the example)")
    r.add_argument("--drain", action="store_true", help="exit when no job is pending anywhere")
    r.add_argument("--max-in-flight", type=int, default=256, help="jobs carried at once (default 256)")
    r.add_argument("--lease", type=float, default=60.0, help="lease seconds (default 60)")
    r.add_argument("--owner", help="lease owner id (default: EMPIRE_REPLICA_ID)")
    r.add_argument("--no-publish", action="store_true", help="record results only; store no content objects")
    r.set_defaults(func=run)


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}"


def status(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.clock import SystemClock
    from empire.agent.pools.budget import day_start
    from empire.agent.pools.context import open_pools
    from empire.config import load_settings

    async def go() -> dict[str, Any]:
        async with open_pools(load_settings(), args.policy) as pc:
            now = SystemClock().now()
            in_flight = await pc.queue.in_flight()
            done = await pc.queue.done_since(day_start(now))
            spend = await pc.queue.spend(now)
            counts = await pc.queue.counts()
            providers = []
            for p in pc.policy.providers:
                accounts = []
                for a in p.accounts:
                    slots = await pc.limiter.slots_in_use(f"{p.name}/{a.name}") if pc.shared else None
                    n, cost = done.get((p.name, a.name), (0, 0.0))
                    accounts.append({
                        "name": a.name, "enabled": a.enabled, "requests_per_minute": a.requests_per_minute,
                        "max_concurrent": a.max_concurrent,
                        "cost_per_job": a.cost_per_job if a.cost_per_job is not None else p.cost_per_job,
                        "in_flight": in_flight.get((p.name, a.name), 0), "shared_slots_in_use": slots,
                        "succeeded_today": n, "spend_today": cost,
                    })  # fmt: skip
                providers.append({
                    "name": p.name, "kind": p.kind, "routing": p.routing.value, "fallback": list(p.fallback),
                    "waiting_for_account": in_flight.get((p.name, None), 0),
                    "spend_today": spend.provider_day(p.name), "spend_month": spend.provider_month(p.name),
                    "budget": p.budget.model_dump(), "accounts": accounts,
                })  # fmt: skip
            queue = {"high": 0, "normal": 0, "low": 0}
            by_state: dict[str, int] = {}
            for (state, prio), n in counts.items():
                by_state[state] = by_state.get(state, 0) + n
                if state in ("queued", "failed") and prio in (0, 1, 2):
                    queue[("high", "normal", "low")[prio]] += n
            return {"at": now.isoformat(), "shared_limits": pc.shared, "providers": providers,
                    "spend_today": spend.day, "spend_month": spend.month, "budget": pc.policy.budget.model_dump(),
                    "queue": queue, "jobs": by_state}  # fmt: skip

    out = anyio.run(go)
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    b = out["budget"]
    print(f"spend today {_money(out['spend_today'])} of {_money(b['daily'])}, "
          f"this month {_money(out['spend_month'])} of {_money(b['monthly'])} (includes jobs in flight)")  # fmt: skip
    q = out["queue"]
    print(f"queue: {q['high']} high, {q['normal']} normal, {q['low']} low waiting; "
          + ", ".join(f"{n} {s}" for s, n in sorted(out["jobs"].items())))  # fmt: skip
    print(f"limits: {'shared through Redis' if out['shared_limits'] else 'per process (no EMPIRE_REDIS_URL)'}")
    for p in out["providers"]:
        pb = p["budget"]
        fb = f", fallback {', '.join(p['fallback'])}" if p["fallback"] else ""
        print(f"\n{p['name']} ({p['kind']}, {p['routing']}{fb}): today {_money(p['spend_today'])} of "
              f"{_money(pb['daily'])}, month {_money(p['spend_month'])} of {_money(pb['monthly'])}")  # fmt: skip
        print(
            f"  {'ACCOUNT':<16} {'REQ/MIN':>8} {'MAX':>5} {'COST':>8} {'IN FLIGHT':>9} {'DONE TODAY':>10} {'SPENT':>10}"
        )
        for a in p["accounts"]:
            flag = "" if a["enabled"] else "  (disabled)"
            slots = f" ({a['shared_slots_in_use']} slots held)" if a["shared_slots_in_use"] is not None else ""
            print(f"  {a['name']:<16} {a['requests_per_minute']:>8g} {a['max_concurrent']:>5} "
                  f"{_money(a['cost_per_job']):>8} {a['in_flight']:>9} {a['succeeded_today']:>10} "
                  f"{_money(a['spend_today']):>10}{slots}{flag}")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    import signal

    import anyio

    from empire.agent.clock import SystemClock
    from empire.agent.monitor import Monitor
    from empire.agent.pools.build import build_dispatcher
    from empire.agent.pools.context import open_pools
    from empire.agent.pools.dispatcher import DispatcherOptions
    from empire.agent.pools.publish import ContentPublisher, DirectoryContentSink
    from empire.config import load_settings
    from empire.errors import ConfigError

    if args.max_in_flight < 1 or args.lease <= 0:
        raise ConfigError("--max-in-flight must be >= 1 and --lease > 0")
    settings = load_settings()
    clock = SystemClock()

    async def go() -> dict[str, Any]:
        async with open_pools(settings, args.policy) as pc:
            metrics = Monitor().pools
            publisher = None
            if not args.no_publish:
                sink = DirectoryContentSink(pc.db, settings.data_dir / "content")
                publisher = ContentPublisher(pc.db, sink, lambda: pc.policy.compliance, clock, metrics.on_content)
            opts = DispatcherOptions(owner=args.owner or settings.replica_id, max_in_flight=args.max_in_flight,
                                     lease_seconds=args.lease, stop_when_empty=args.drain)  # fmt: skip
            d = build_dispatcher(pc.policy, pc.db, opts, pc.limiter, metrics, publisher, clock=clock)
            try:
                async with anyio.create_task_group() as tg:

                    async def on_signal() -> None:
                        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                            async for _ in signals:
                                d.stop()
                                return

                    tg.start_soon(on_signal)
                    await d.run()
                    tg.cancel_scope.cancel()
            finally:
                await d.aclose()
            return {**d.stats, "cpu_seconds": round(d.cpu_seconds, 3)}

    print(json.dumps(anyio.run(go)))
    return 0
