"""`empire run`: the daemon (observe -> decide -> act every `loop.interval`), with its HTTP endpoints."""

from __future__ import annotations

import argparse
import logging
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the agent: scale, generate, retier and alert until SIGTERM",
        description=(
            "Run the control loop and serve /metrics /healthz /readyz /status. With nothing configured it "
            "runs against no metric source and a dry-run pretend cluster, and says so."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""settings read (see 'empire config show'):
  EMPIRE_POLICY_FILE        policy YAML (reloaded on change; --policy overrides)
  EMPIRE_PROMETHEUS__URL    metric source (unset: no source, fallbacks apply)
  EMPIRE_KUBERNETES__MODE   auto | in_cluster | kubeconfig | disabled (no cluster: dry run)
  EMPIRE_DATABASE_URL       journal (default SQLite in EMPIRE_DATA_DIR); PostgreSQL -> advisory-lock leader
  EMPIRE_REDIS_URL          leader lease when the database is not PostgreSQL
  EMPIRE_HTTP__HOST/PORT    endpoints (default 127.0.0.1:9464)

examples:
  empire run --dry-run                          decide and journal, never act
  EMPIRE_PROMETHEUS__URL=http://prometheus:9090 empire run --policy policy.yaml
  empire run --once                             one tick, then exit (smoke test)
  empire run --simulate                         the NASA trace at x60 (an hour a minute); open http://127.0.0.1:9464/
  empire run --simulate demand.csv --speed 600  your own trace, ten hours a minute""",
    )
    p.add_argument("--policy", metavar="FILE", help="policy YAML (default: EMPIRE_POLICY_FILE or the shipped example)")
    p.add_argument("--dry-run", action="store_true", help="decide and journal every action, execute none")
    p.add_argument("--once", action="store_true", help="run a single tick and exit")
    p.add_argument("--simulate", nargs="?", const="", default=None, metavar="TRACE",
                   help="run in a simulated world: demand replayed from TRACE (a timestamp,value CSV; default: the "
                        "shipped NASA-HTTP trace), a simulated cluster, a fast clock; journal and tiers in "
                        "<data dir>/simulation; status page at http://127.0.0.1:9464/")  # fmt: skip
    p.add_argument(
        "--speed",
        type=float,
        default=60.0,
        metavar="N",
        help="with --simulate: simulated time runs N times faster than the wall clock (default 60)",
    )
    p.add_argument("--notify", action="store_true",
                   help="with --simulate: keep the policy's Slack/email/Alertmanager receivers (default: every "
                        "alert goes to the dashboard receiver)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import anyio

    from empire.agent.daemon import build_daemon, run_daemon
    from empire.config.settings import load_settings

    settings = load_settings()
    _dump_stacks_on_sigusr1()
    if not getattr(args, "verbose", 0):  # a daemon logs at INFO by default (one line per decision and action)
        logging.getLogger().setLevel(settings.log_level)

    if args.simulate is not None:
        return _simulate(args, settings)

    async def main() -> int:
        daemon = await build_daemon(settings, args.policy, dry_run=args.dry_run)
        return await run_daemon(daemon, once=args.once, on_stop=lambda: _exit_after(settings.shutdown_timeout))

    return anyio.run(main)


def _simulate(args: argparse.Namespace, settings: Any) -> int:
    """`--simulate`: one summary line per simulated hour on stdout; the log at WARNING unless -v."""
    import anyio

    from empire.agent.daemon import run_daemon
    from empire.agent.simulation.run import SimulationOptions, add_summary, build_simulation
    from empire.errors import ConfigError

    if args.once or args.dry_run:
        raise ConfigError("--simulate runs until Ctrl-C and acts on its simulated cluster: no --once or --dry-run")
    if not getattr(args, "verbose", 0):
        logging.getLogger().setLevel(logging.WARNING)
    options = SimulationOptions(trace=args.simulate or None, speed=args.speed, policy_file=args.policy,
                                notify=args.notify)  # fmt: skip

    def emit(line: str) -> None:
        print(line, flush=True)

    async def main() -> int:
        daemon, world = await build_simulation(settings, options)
        add_summary(daemon, world, emit)
        h = settings.http
        emit(f"simulating {world.trace.name} at x{options.speed:g} from {daemon.clock.now():%Y-%m-%d %H:%M} UTC; "
             f"status page http://{h.host}:{h.port}/ ; Ctrl-C stops")  # fmt: skip
        return await run_daemon(daemon, on_stop=lambda: _exit_after(settings.shutdown_timeout))

    return anyio.run(main)


def _exit_after(timeout: float) -> None:
    """Armed when the shutdown begins (SIGTERM/SIGINT): it always ends within `timeout` seconds.

    The orderly shutdown is bounded part by part (the runner's action timeout, the pools' and the
    periodic jobs' grace, the SQLite busy timeout), but a peer that never answers, or a library
    bug like the aiosqlite close that once hung `asyncio.run` for ever, must not keep a stopping
    process alive until Kubernetes kills it without a word. Past the deadline every thread's stack
    goes to stderr and the process exits 1 at once. Nothing is journaled half-way: an unfinished
    transaction is rolled back by the database, and an action's intent, written before the action,
    is settled by read-back at the next start (`ActionRunner.reconcile`)."""
    import faulthandler
    import os
    import sys
    import threading

    def expire() -> None:
        logging.getLogger("empire.cli.run").error(
            "shutdown did not finish within %gs (EMPIRE_SHUTDOWN_TIMEOUT): exiting now; "
            "every thread's stack follows", timeout)  # fmt: skip
        faulthandler.dump_traceback(all_threads=True)
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True  # a clean exit does not wait for it
    timer.start()


def _dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` prints every thread's stack to stderr, and the daemon goes on: how an
    operator (or a test) finds out why a daemon hangs, e.g. in shutdown, without a debugger."""
    import faulthandler
    import signal

    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
