"""The one interface through which an area (tiering, backup, pools, alerting, predictive) plugs into `empire run`.

Why an interface and not a service locator: an area's `build(deps)` gets typed dependencies
(`AreaDeps`) and *returns* what it contributes (`AreaHandle`); it does not reach into the daemon
or patch attributes onto its objects. The daemon (`empire.agent.daemon`) wires every area in one
place and applies each policy reload to all of them the same way:

* every area's `on_policy(loaded)` is called (one failing is logged; the others still get it);
* every periodic job's interval is recomputed from the new policy with its `every(policy)`, and a
  job whose interval changed is rescheduled. No area re-implements reload scheduling, so a new
  `storage.sweep_every` reschedules `tiering-sweep` exactly as a new `loop.interval` reschedules
  `generation-plan` (tests/integration/test_daemon_areas.py changes every interval and checks).

A failing area does not stop the daemon: scaling (the loop) is the agent's first job and must not
depend on, say, an alert receiver's settings. The area's `build` either returns a whole handle or
contributes nothing (no half-registered jobs); the daemon runs *degraded*: the failure is logged,
`/status` shows it under `areas` and `/readyz` (still 200: the agent serves what it can) carries
`"degraded": ["pools: <error>"]`. A restart with the cause fixed brings the area back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from empire.agent.scheduler import JobFunc

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from empire.agent.journal import ActionRunner
    from empire.agent.loop import ControlLoop, Forecaster
    from empire.agent.monitor import Monitor
    from empire.agent.ports import Clock, Executor, LeaderElection, Observer, StateStore
    from empire.config.secrets import SecretReader
    from empire.config.settings import Settings
    from empire.policies.loading import LoadedPolicy
    from empire.policies.schema import Policy
    from empire.state.database import Database

__all__ = ["Area", "AreaDeps", "AreaHandle", "AreaPlugin", "PeriodicJob"]


@dataclass(frozen=True)
class PeriodicJob:
    """A job the daemon schedules. `every(policy)` is its interval under a policy: re-read on every
    reload, so the schedule always follows the policy in force."""

    name: str
    every: Callable[[Policy], timedelta]
    run: JobFunc
    leader_only: bool = True
    first_delay: timedelta = timedelta(0)


@dataclass
class AreaHandle:
    """What an area contributes. Everything is optional; the daemon registers it all at once."""

    jobs: list[PeriodicJob] = field(default_factory=list)
    routes: list[BaseRoute] = field(default_factory=list)
    status: dict[str, Callable[[], Any]] = field(default_factory=dict)  # `/status` sections by name
    executors: dict[type, Executor] = field(default_factory=dict)  # action type -> executor
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # tasks until shutdown
    metrics: tuple[type, ...] = ()  # metric groups it registers (`monitor.group(kind)`)
    offers: dict[str, Any] = field(default_factory=dict)  # objects for the areas built after it
    forecaster: Forecaster | None = None  # the loop's predictive seam (the predictive area)
    on_policy: Callable[[LoadedPolicy], None] | None = None
    close: Callable[[], Awaitable[None]] | None = None  # at shutdown, in reverse order of building


@dataclass(frozen=True)
class AreaDeps:
    """What the daemon gives every area. `policy()` is the policy in force (never a file of its own);
    `offered` holds what the areas built earlier offered (tiering: `storage_backend`; predictive:
    `forecast_horizon`, which alerting reads lazily because predictive is built after it).
    `state_up()` is False while the state database is down (`empire.state.health`): an area holds
    whatever it could not journal (no job claimed, no notification sent)."""

    settings: Settings
    clock: Clock
    monitor: Monitor
    db: Database
    store: StateStore
    observer: Observer
    runner: ActionRunner
    loop: ControlLoop
    leader: LeaderElection
    policy: Callable[[], LoadedPolicy]
    secret_reader: SecretReader | None
    offered: Mapping[str, Any]
    state_up: Callable[[], bool] = lambda: True


class Area(Protocol):
    name: str

    def build(self, deps: AreaDeps) -> AreaHandle: ...


@dataclass(frozen=True)
class AreaPlugin:
    """An `Area` from a name and a build function (what each area module exports as `AREA`)."""

    name: str
    build: Callable[[AreaDeps], AreaHandle]
