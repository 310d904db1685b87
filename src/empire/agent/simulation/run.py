"""`empire run --simulate`: the real daemon, in a simulated world, on a fast clock.

Everything but the surroundings is what `empire run` runs: the same `build_daemon` (loop, journal,
leader election, alerting, pools, tiering, backups, HTTP and the status page, the state DB on the
embedded SQLite default), with

* a `ScaledClock` running `speed` times faster than the wall clock (the periodic jobs follow it:
  they run after each tick on the loop's clock, as in the backtest);
* `SimulatedSurroundings` in place of Prometheus and Kubernetes: the demand trace drives each
  target's signals, and scaling is applied with the backtest's start-up delay and capacity model;
* the policy's own generation providers (the shipped one has simulated providers), whose
  results fill the local tiers;
* a `SimulatedAudience` that plays those tracks and pays for them, as a publishing platform's
  reports would (revenue and ROI per persona, access scores for the tier sweep).

Why its own data directory (`<EMPIRE_DATA_DIR>/simulation`, emptied at each start): its journal is
written in simulated time. Restored into a real daemon's journal, those decisions would be read
back as stabilization history. For the same reason an explicit `EMPIRE_DATABASE_URL` is refused.

Why the policy is copied there (`policy.yaml`, which the simulation hot-reloads): alert receivers
that would reach people (Slack, email, Alertmanager) become dashboard receivers of the same name,
unless `--notify` is given, so an alert fires on the trace as it would in production and lands
on the status page, not in someone's inbox.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from empire.agent.areas import PeriodicJob
from empire.agent.backtest.engine import BacktestSettings
from empire.agent.backtest.trace import DemandTrace, load_trace
from empire.agent.clock import ScaledClock
from empire.agent.daemon import Daemon, Surroundings, build_daemon
from empire.agent.simulation.audience import SimulatedAudience
from empire.agent.simulation.surroundings import SimulatedSurroundings
from empire.agent.statuspage.data import PageSources, gather
from empire.config.settings import Settings
from empire.errors import ConfigError
from empire.policies.loading import read_policy_text

__all__ = ["SimulationOptions", "build_simulation", "simulation_dir", "summary_line"]

logger = logging.getLogger(__name__)

MARKER = ".empire-simulation"
WEEK = timedelta(days=7)
NOTIFYING = ("slack", "email", "alertmanager")


@dataclass(frozen=True)
class SimulationOptions:
    trace: str | Path | None = None  # default: the shipped NASA-HTTP trace
    speed: float = 60.0
    policy_file: str | Path | None = None
    notify: bool = False  # keep the policy's Slack/email/Alertmanager receivers
    warmup: timedelta = timedelta(days=1)  # trace before the simulated start: the models' history
    startup_delay: timedelta = field(default_factory=lambda: timedelta(seconds=BacktestSettings().startup_delay))
    wall_now: datetime | None = None  # for tests: where the simulated time is placed


def simulation_dir(settings: Settings) -> Path:
    """`<data dir>/simulation`, emptied (it holds nothing but a previous simulation's files)."""
    d = settings.data_dir / "simulation"
    marker = d / MARKER
    if d.exists() and any(d.iterdir()):
        if not marker.exists():
            raise ConfigError(f"{d} exists and was not made by a simulation: move it away or set EMPIRE_DATA_DIR")
        pid = _pid(marker.read_text())
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise ConfigError(f"a simulation (pid {pid}) is running in {d}: stop it first, or set EMPIRE_DATA_DIR")
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"made by `empire run --simulate`; emptied at its next start\npid {os.getpid()}\n")
    return d


def _pid(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("pid ") and line[4:].strip().isdigit():
            return int(line[4:])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def simulated_policy(source: Path, dest: Path, notify: bool) -> list[str]:
    """Copy the policy to `dest`; unless `notify`, receivers that reach people become dashboard
    receivers. Returns their names."""
    body = yaml.safe_load(read_policy_text(source)) or {}
    muted = []
    if not notify:
        for r in (body.get("alerting") or {}).get("receivers") or []:
            if isinstance(r, dict) and any(k in r for k in NOTIFYING):
                muted.append(str(r.get("name")))
                for k in NOTIFYING:
                    r.pop(k, None)
                r["dashboard"] = {}
    head = (f"# The policy of `empire run --simulate`, copied from {source}.\n"
            "# Edit this copy to change the running simulation (it is reloaded on change).\n")  # fmt: skip
    if muted:
        head += f"# Receivers turned into dashboard receivers (no --notify): {', '.join(muted)}\n"
    dest.write_text(head + yaml.safe_dump(body, sort_keys=False))
    return muted


def place(trace: DemandTrace, warmup: timedelta, wall_now: datetime) -> tuple[timedelta, datetime]:
    """Where the simulated clock starts: `warmup` into the trace, moved by whole weeks (days and
    weekdays stay where the trace had them) to the last such instant at or before `wall_now`."""
    first = trace.start + warmup
    weeks = math.floor((wall_now - first) / WEEK)
    offset = weeks * WEEK
    return offset, first + offset


async def build_simulation(settings: Settings, options: SimulationOptions) -> tuple[Daemon, SimulatedSurroundings]:
    if settings.database_url is not None:
        raise ConfigError("a simulation keeps its own journal (SQLite in <data dir>/simulation: its times are "
                          "simulated); unset EMPIRE_DATABASE_URL for `empire run --simulate`")  # fmt: skip
    if not options.speed > 0:
        raise ConfigError(f"--speed must be above 0, not {options.speed:g}")
    trace = load_trace(options.trace)
    warmup = min(options.warmup, timedelta(minutes=len(trace)) / 4)
    source = settings.policy_path(options.policy_file)
    sim_dir = simulation_dir(settings)
    policy_file = sim_dir / "policy.yaml"
    muted = simulated_policy(source, policy_file, options.notify)
    settings = settings.model_copy(update={"data_dir": sim_dir, "policy_file": None})
    offset, start = place(trace, warmup, options.wall_now or datetime.now(UTC))
    clock = ScaledClock(start, options.speed)
    world = SimulatedSurroundings(trace, clock, offset=offset, startup_delay=options.startup_delay)
    surroundings = Surroundings(
        observer=world, cluster=world, metric_source=f"simulation: trace {trace.name} at x{options.speed:g}",
        cluster_info=f"simulated (a replica is ready {options.startup_delay.total_seconds():g}s after it is requested)",
    )  # fmt: skip
    daemon = await build_daemon(settings, policy_file, clock=clock, surroundings=surroundings)
    world.set_targets(daemon.policy().policy.targets)
    daemon.policy_listeners.append(lambda loaded: world.set_targets(loaded.policy.targets))
    info = {"trace": trace.name, "speed": options.speed, "started_at": start.isoformat(),
            "trace_ends_at": world.end.isoformat(), "data_dir": str(sim_dir), "policy_file": str(policy_file),
            "muted_receivers": muted}  # fmt: skip
    audience = SimulatedAudience(daemon.db, lambda: daemon.policy().policy)
    daemon.schedule(PeriodicJob("simulated-audience", lambda _: timedelta(hours=1), audience,
                                first_delay=timedelta(hours=1)))  # fmt: skip
    daemon.context.status_sections["simulation"] = lambda: {
        **info,
        "clusters": world.summary(),
        "audience": {"plays": audience.plays, "revenue": round(audience.revenue, 4)},
    }
    if muted:
        logger.info("simulation: receivers %s deliver to the dashboard (--notify keeps them)", ", ".join(muted))
    logger.info("simulation: %s from %s (trace minute %d) at x%g; journal and tiers in %s", trace.name,
                start.isoformat(timespec="minutes"), world.minute(start), options.speed, sim_dir)  # fmt: skip
    return daemon, world


@dataclass
class HourlySummary:
    """The periodic job that prints one line per simulated hour."""

    daemon: Daemon
    world: SimulatedSurroundings
    emit: Callable[[str], None]
    _short: dict[str, int] = field(default_factory=dict)
    _ended: bool = False

    async def __call__(self, now: datetime) -> None:
        d = self.daemon
        assert d.history is not None
        sources = PageSources(d.context.status_body, d.history, d.store, d.db, lambda: d.policy().policy, d.clock.now)
        data = await gather(sources)
        short = {n: b.under_minutes for n, b in self.world.books.items()}
        line = summary_line(data, self.world.demand(now), {n: v - self._short.get(n, 0) for n, v in short.items()})
        self._short = short
        if now >= self.world.end and not self._ended:
            self._ended = True
            line += "  | the trace has ended: targets see no data (Ctrl-C stops)"
        self.emit(line)


def summary_line(data: dict[str, Any], demand: float | None, short: dict[str, int]) -> str:
    """`2026-11-29 13:00  demand 1,204/min | generator 23/23 (0 short min) ... | alerts 1 | 12 tracks | $0.96`."""
    at = datetime.fromisoformat(data["now"]).strftime("%Y-%m-%d %H:%M")
    parts = [f"{at}  demand {f'{demand:,.0f}/min' if demand is not None else 'none'}"]
    st = (data.get("status") or {}).get("targets") or {}
    for name, t in (data.get("targets") or {}).items():
        hist = t.get("history") or []
        ready = hist[-1].get("ready") if hist else None
        current = (st.get(name) or {}).get("current")
        parts.append(f"{name} {current if current is not None else '-'}/{ready if ready is not None else '-'} ready "
                     f"({short.get(name, 0)} short min)")  # fmt: skip
    alerts = data.get("alerts")
    if isinstance(alerts, list):
        hour_ago = datetime.fromisoformat(data["now"]) - timedelta(hours=1)
        fired = sorted({a["rule"] for a in alerts if datetime.fromisoformat(a["since"]) >= hour_ago})
        firing = sum(1 for a in alerts if a.get("state") == "firing")
        parts.append(f"alerts firing {firing}" + (f", fired this hour: {', '.join(fired)}" if fired else ""))
    tiers = data.get("tiers")
    if isinstance(tiers, list):
        parts.append(f"{sum(r['objects'] for r in tiers)} tracks stored")
    pools = data.get("pools")
    if isinstance(pools, dict) and "spend_today" in pools:
        parts.append(f"spend today ${pools['spend_today']:,.2f}, queue {pools.get('queued', 0)}")
    return " | ".join(parts)


def add_summary(daemon: Daemon, world: SimulatedSurroundings, emit: Callable[[str], None]) -> None:
    """One line per simulated hour (`emit`: the terminal), from the status page's data."""
    daemon.schedule(PeriodicJob("simulation-summary", lambda _: timedelta(hours=1), HourlySummary(daemon, world, emit),
                                leader_only=False, first_delay=timedelta(hours=1)))  # fmt: skip
