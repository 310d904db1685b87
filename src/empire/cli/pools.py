"""`empire pools status|run|hold|release`: the provider pools' limits, load, spend and holds.

`status` reads the policy and the state DB (and Redis, when configured, for the shared slots in
use): it works while the daemon runs. It cannot show the accounts' breakers (cooling down until,
key rejected): they live in each dispatcher's memory, in another process. The daemon's `/status`
(`pools.breakers`) and the summary `run` prints when it exits show them. `empire run` runs the dispatcher on every replica already;
`run` runs only the generation dispatcher (no control loop): for a dedicated generation worker,
or to drain the queue (`--drain`) and exit. Either way finished tracks go to the hottest storage
tier (through the policy's storage backend) and into the tiering inventory.

`hold` pauses a persona (the planner holds its cadence back, its queued jobs wait) or drains an
account (no new jobs; those in flight finish); `release` lifts every hold on it, including one an
alert remediation set. Holds live in the state DB: every replica follows them within seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from empire.cli.common import count, number


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
  empire pools hold persona luna-waves      pause a persona (release with: empire pools release persona ...)
  empire pools hold account music-sim/main-1   route no new jobs to an account
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
    r.add_argument("--max-in-flight", type=count(1, 100_000), default=256, help="jobs carried at once (default 256)")
    r.add_argument("--lease", type=number(1, 86_400), default=60.0, help="lease seconds (default 60)")
    r.add_argument("--owner", help="lease owner id (default: EMPIRE_REPLICA_ID)")
    r.add_argument("--no-publish", action="store_true", help="record results only; store no content objects")
    r.set_defaults(func=run)
    for name, verb in (("hold", "pause a persona or drain an account"), ("release", "lift every hold on it")):
        h = psub.add_parser(name, help=verb)
        h.add_argument("kind", choices=("persona", "account"))
        h.add_argument("name", metavar="NAME", help="persona name, or PROVIDER/ACCOUNT")
        h.add_argument("--policy", metavar="FILE", help="policy YAML (default: EMPIRE_POLICY_FILE or the example)")
        h.set_defaults(func=hold if name == "hold" else release)


def _money(x: float | None) -> str:
    return "-" if x is None else f"${x:,.2f}"


def status(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.clock import SystemClock
    from empire.agent.pools.budget import day_start
    from empire.agent.pools.context import open_pools
    from empire.config.settings import load_settings
    from empire.state.holds import SqlHoldStore

    async def go() -> dict[str, Any]:
        async with open_pools(load_settings(), args.policy, readonly=True) as pc:
            now = SystemClock().now()
            in_flight = await pc.queue.in_flight()
            done = await pc.queue.done_since(day_start(now))
            spend = await pc.queue.spend(now)
            counts = await pc.queue.counts()
            holds = [h.describe() for h in await SqlHoldStore(pc.db).list()]
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
                    "queue": queue, "jobs": by_state, "holds": holds}  # fmt: skip

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
    for kind, what in (("persona", "paused personas"), ("account", "drained accounts")):
        held: dict[str, list[str]] = {}
        for h in out["holds"]:
            if h["kind"] == kind:
                held.setdefault(h["subject"], []).append(f"{h['source']} since {h['updated_at'][:19]}Z")
        if held:
            print(f"{what}: " + "; ".join(f"{k} ({', '.join(v)})" for k, v in sorted(held.items())))
    for p in out["providers"]:
        pb = p["budget"]
        fb = f", fallback {', '.join(p['fallback'])}" if p["fallback"] else ""
        print(f"\n{p['name']} ({p['kind']}, {p['routing']}{fb}): today {_money(p['spend_today'])} of "
              f"{_money(pb['daily'])}, month {_money(p['spend_month'])} of {_money(pb['monthly'])}")  # fmt: skip
        print(
            f"  {'ACCOUNT':<16} {'REQ/MIN':>8} {'MAX':>5} {'COST':>8} {'IN FLIGHT':>9} {'DONE TODAY':>10} {'SPENT':>10}"
        )
        for a in p["accounts"]:
            drained = any(h["kind"] == "account" and h["subject"] == f"{p['name']}/{a['name']}" for h in out["holds"])
            flag = ("" if a["enabled"] else "  (disabled)") + ("  (drained)" if drained else "")
            slots = f" ({a['shared_slots_in_use']} slots held)" if a["shared_slots_in_use"] is not None else ""
            print(f"  {a['name']:<16} {a['requests_per_minute']:>8g} {a['max_concurrent']:>5} "
                  f"{_money(a['cost_per_job']):>8} {a['in_flight']:>9} {a['succeeded_today']:>10} "
                  f"{_money(a['spend_today']):>10}{slots}{flag}")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    import signal

    import anyio

    from empire.agent.clock import SystemClock
    from empire.agent.kube.kubeconfig import load_cluster_config
    from empire.agent.monitor import Monitor
    from empire.agent.pools.context import open_pools
    from empire.agent.pools.dispatcher import DispatcherOptions
    from empire.agent.pools.metrics import PoolMetrics
    from empire.agent.pools.publish import StorageContentSink
    from empire.agent.pools.runtime import PoolsRuntime
    from empire.agent.tiering.backends import build_backend
    from empire.config.settings import load_settings
    from empire.state.callbacks import SqlCallbackStore
    from empire.state.content import SqlContentCatalog
    from empire.state.holds import SqlHoldStore
    from empire.state.jobs import SqlJobQueue

    settings = load_settings()
    clock = SystemClock()
    secrets = None
    cluster = load_cluster_config(settings.kubernetes)
    if cluster is not None:
        from empire.agent.kube.kubesecrets import KubernetesSecretReader

        secrets = KubernetesSecretReader(cluster)

    async def go() -> dict[str, Any]:
        async with open_pools(settings, args.policy) as pc:
            metrics = Monitor().group(PoolMetrics)
            backend = sink = None
            if not args.no_publish:
                backend = build_backend(pc.policy.storage, settings.data_dir, secrets)
                sink = StorageContentSink(SqlContentCatalog(pc.db), backend, pc.policy.storage.tiers[0].name)
            opts = DispatcherOptions(owner=args.owner or settings.replica_id, max_in_flight=args.max_in_flight,
                                     lease_seconds=args.lease, stop_when_empty=args.drain)  # fmt: skip
            rt = PoolsRuntime(lambda: pc.policy, SqlContentCatalog(pc.db), clock, pc.limiter, opts, sink, metrics=metrics,
                              secrets=secrets, holds=SqlHoldStore(pc.db), callbacks=SqlCallbackStore(pc.db),
                              queue=SqlJobQueue(pc.db))  # fmt: skip
            for name, error in rt.adapter_errors.items():
                print(f"provider {name} unavailable: {error}", file=sys.stderr)
            d = rt.dispatcher
            try:
                await rt.refresh(clock.now())
                async with anyio.create_task_group() as tg:

                    async def on_signal() -> None:
                        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                            async for _ in signals:
                                d.stop()
                                return

                    tg.start_soon(on_signal)
                    tg.start_soon(rt.refresh_forever)
                    await d.run()
                    tg.cancel_scope.cancel()
            finally:
                await rt.aclose()
                if backend is not None:
                    await backend.aclose()
            breakers = d.breakers()
            for key, b in breakers.items():
                if b["state"] == "key_rejected":
                    print(f"account {key}: key rejected ({b['last_error']})", file=sys.stderr)
            return {**d.stats, "cpu_seconds": round(d.cpu_seconds, 3), "breakers": breakers}

    try:
        print(json.dumps(anyio.run(go)))
    finally:
        if secrets is not None:
            secrets.close()
    return 0


def _hold(args: argparse.Namespace, held: bool) -> int:
    import getpass

    from empire.agent.clock import SystemClock
    from empire.agent.pools.holds import MANUAL, HoldKind
    from empire.cli.common import with_database
    from empire.config.settings import load_settings
    from empire.errors import ConfigError
    from empire.policies.loading import load_policy
    from empire.state.holds import SqlHoldStore

    settings = load_settings()
    policy = load_policy(settings.policy_path(args.policy)).policy
    kind = HoldKind(args.kind)
    known = ({p.name for p in policy.personas} if kind is HoldKind.persona
             else {f"{p.name}/{a.name}" for p in policy.providers for a in p.accounts})  # fmt: skip
    if held and args.name not in known:
        raise ConfigError(f"no {kind.value} {args.name!r} in the policy (known: {', '.join(sorted(known)) or 'none'})")
    actor = f"cli:{getpass.getuser()}"

    async def go(db: Any) -> int:
        store, now = SqlHoldStore(db), SystemClock().now()
        if held:
            return int(await store.set(kind, args.name, MANUAL, True, reason="manual", actor=actor, at=now))
        return await store.release_all(kind, args.name, actor=actor, at=now)

    n = with_database(go, url=settings.database_url_value)
    what = "paused" if kind is HoldKind.persona else "drained"
    if held:
        print(f"{kind.value} {args.name} {what}" + ("" if n else " (it already was)")
              + "; every replica follows within seconds")  # fmt: skip
    else:
        print(f"{kind.value} {args.name}: {n} hold(s) released" if n else f"{kind.value} {args.name} was not held")
    return 0


def hold(args: argparse.Namespace) -> int:
    return _hold(args, True)


def release(args: argparse.Namespace) -> int:
    return _hold(args, False)
