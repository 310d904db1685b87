"""`Daemon`: assembles the agent from settings and runs it until SIGTERM/Ctrl-C. Used by `empire run`.

Why a separate assembly module: every adapter choice is made here once, from `Settings`, and
logged in plain words (which metric source, which cluster, which leader election), so `empire run`
with nothing configured explains itself: "no metric source configured ... fallback applies",
"no Kubernetes cluster found ... dry-run pretend cluster". Nothing here crashes on a missing peer.

Areas (tiering, backup, pools, alerting, predictive) plug in through one typed interface
(`empire.agent.areas`): each module in `AREA_MODULES` exports `AREA`, whose `build(AreaDeps)`
returns an `AreaHandle` (periodic jobs, HTTP routes, `/status` sections, executors, background
tasks, metric groups, `on_policy`, `close`). `build_daemon` wires them here, in order (an area may
use what an earlier one offered: tiering offers `"storage_backend"`, predictive
`"forecast_horizon"`), and `Daemon.apply_policy` applies a reload to all of them the same way,
rescheduling every job whose interval changed. A failing area leaves the daemon running degraded
(see `empire.agent.areas`). The core offers the `KubernetesSecretReader` (`AreaDeps.secret_reader`)
when a cluster is configured, for `secret:` references.

`empire run --simulate` builds this same daemon with `Surroundings` (a trace-driven observer and
a simulated cluster, `empire.agent.simulation`) and a fast clock: its periodic jobs then run after
each tick on the loop's clock instead of apscheduler's wall clock. Every daemon serves the status
page at `/` (`empire.agent.statuspage`), its charts fed by `Daemon.history` after each tick.

The policy comes from one of two sources (`EMPIRE_POLICY_SOURCE`): `file` (the policy file,
hot-reloaded by `PolicyWatcher`) or `database` (the version the operator applied from an
EmpireConfig, followed by `DbPolicySource`; idle and dry-run until the first one arrives).

The state database is watched by a `StateHealth` (`daemon.db.health`): while it is down,
`/readyz` answers 503 with the reason, `/status` (`state_db`) and `empire_state_db_up` /
`empire_state_db_failure{reason}` say so, the runner and the periodic jobs hold every action, and
the generation dispatcher claims no job; it recovers by itself (see `empire.state.health`). A
SQLite file is integrity-checked (`PRAGMA quick_check`) before the daemon trusts it: a corrupt one
stops the start with one line naming `empire db verify` (exit 2).

Shutdown, in order: SIGTERM or SIGINT stops the periodic jobs from starting new runs (`on_stop`
is called: `empire run` arms its shutdown deadline there) and cancels the task group. The action
in flight finishes inside the runner's shielded scope and is journaled; a state-DB unit of work
in flight commits or rolls back whole (`Database` shields it). Then the periodic jobs in flight
are given until their grace ends, the lease is released, the areas' closers run and the state
database closes last, after waiting for its units in flight; the process exits 0.
"""

from __future__ import annotations

import importlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.routing import BaseRoute

from empire.agent.api.guard import Gate
from empire.agent.areas import Area, AreaDeps, AreaHandle, PeriodicJob
from empire.agent.clock import SystemClock
from empire.agent.history import StatusHistory
from empire.agent.http import AppContext, ConnectionLimits, bind, build_app, serve
from empire.agent.journal import ActionRunner
from empire.agent.leader import leader_for
from empire.agent.loop import ControlLoop
from empire.agent.monitor import Monitor
from empire.agent.policysource import FilePolicySource, PolicySource, database_source
from empire.agent.ports import Clock, LeaderElection, Observer, StateStore, WorkloadReader
from empire.agent.records import AuditRecord
from empire.agent.scheduler import PeriodicJobs
from empire.agent.statuspage.data import PageSources
from empire.agent.statuspage.routes import DATA_PATHS, page_routes
from empire.agent.tls import TlsFiles
from empire.agent.types import ScaleTo
from empire.config.settings import Settings
from empire.config.urls import mask_url
from empire.errors import ConfigError, StateDbError, TemporaryError
from empire.logrepeat import log_unless_reported
from empire.policies.loading import LoadedPolicy, PolicyWatcher

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from empire.state.database import Database

__all__ = ["AREA_MODULES", "Daemon", "Surroundings", "build_daemon", "check_policy", "run_daemon"]

logger = logging.getLogger(__name__)

INGEST_PATHS = frozenset({"/v1/content/access", "/v1/content/revenue"})  # what EMPIRE_INGEST_TOKEN may call

AREA_MODULES: tuple[str, ...] = (
    "empire.agent.tiering.setup",  # before pools: generated tracks are stored through its backend
    "empire.agent.backup.setup",  # after tiering: backups are written through its backend
    "empire.agent.pools.setup",
    "empire.agent.alerting.setup",
    "empire.agent.predictive",  # forecasts for targets with predictive.mode (issue 5)
)
"""Each exports `AREA` (an `empire.agent.areas.Area`), built in this order."""


@dataclass
class Daemon:
    settings: Settings
    clock: Clock
    monitor: Monitor
    db: Database
    store: StateStore
    source: PolicySource  # `current`, `last_error`, `interval`, `where`, `async check()`
    observer: Observer
    workloads: WorkloadReader
    runner: ActionRunner
    jobs: PeriodicJobs
    loop: ControlLoop
    leader: LeaderElection
    context: AppContext
    routes: list[BaseRoute] = field(default_factory=list)
    background: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    policy_listeners: list[Callable[[LoadedPolicy], None]] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)  # what one area offers the next, by name
    periodic: dict[str, PeriodicJob] = field(default_factory=dict)  # every job, with its interval rule
    areas: dict[str, str] = field(default_factory=dict)  # area -> "ok" | "failed: <error>" (in /status)
    history: StatusHistory | None = None  # the last hours per target, for the status page
    app: Starlette | None = None  # once `run_daemon` serves it

    def policy(self) -> LoadedPolicy:
        """The policy in force (what the loop decides with)."""
        return self.loop.policy

    def schedule(self, job: PeriodicJob) -> None:
        """Register a job at its interval under the policy in force (re-read on every reload)."""
        self.periodic[job.name] = job
        self.jobs.add(job.name, job.every(self.policy().policy), job.run, leader_only=job.leader_only,
                      first_delay=job.first_delay)  # fmt: skip

    def apply_policy(self, loaded: LoadedPolicy) -> None:
        """Swap a new policy in: the loop first, then every area's `on_policy` and every other listener
        (one failing is logged and does not keep the others, or the loop, on the old policy), then every
        job whose interval under the new policy differs is rescheduled."""
        self.loop.set_policy(loaded)
        for listener in self.policy_listeners:
            try:
                listener(loaded)
            except Exception:
                logger.exception("a policy listener failed on version %s", loaded.version)
        for job in self.periodic.values():
            try:
                every = job.every(loaded.policy)
                current = self.jobs.jobs.get(job.name)
                if current is not None and current.interval != every:
                    self.jobs.add(job.name, every, job.run, leader_only=job.leader_only, first_delay=job.first_delay)
                    logger.info("job %s rescheduled: every %s (was %s)", job.name, every, current.interval)
            except Exception:
                logger.exception("could not reschedule job %s on version %s", job.name, loaded.version)

    def add_area(self, name: str, handle: AreaHandle) -> None:
        """Register everything an area contributes, at once."""
        for kind, executor in handle.executors.items():
            self.runner.register(kind, executor)
        for job in handle.jobs:
            self.schedule(job)
        self.routes.extend(handle.routes)
        self.context.status_sections.update(handle.status)
        self.background.extend(handle.background)
        self.services.update(handle.offers)
        for group in handle.metrics:
            self.monitor.group(group)
        if handle.forecaster is not None:
            self.loop.forecaster = handle.forecaster
        if handle.on_policy is not None:
            self.policy_listeners.append(handle.on_policy)
        if handle.close is not None:
            self.closers.append(handle.close)
        self.areas[name] = "ok"

    def deps(self) -> AreaDeps:
        return AreaDeps(
            settings=self.settings, clock=self.clock, monitor=self.monitor, db=self.db, store=self.store,
            observer=self.observer, runner=self.runner, loop=self.loop, leader=self.leader, policy=self.policy,
            secret_reader=self.services.get("secret_reader"), offered=self.services,
            state_up=lambda: self.db.health is None or self.db.health.up,
        )  # fmt: skip


@dataclass(frozen=True)
class Surroundings:
    """What `empire run --simulate` puts where Prometheus and Kubernetes would be: an `Observer`,
    a `WorkloadReader` that is also the `ScaleTo` executor, and how `/status` names them. The
    periodic jobs then run on the loop's clock (`ControlLoop.drive_jobs`), which is a fast one:
    apscheduler's triggers only know the wall clock."""

    observer: Any
    cluster: Any
    metric_source: str
    cluster_info: str


def _secret_reader(cluster: Any, closers: list[Callable[[], Awaitable[None]]]) -> Any:
    """Reads `secret:` references from the agent's namespace (cached; closed with the daemon)."""
    from empire.agent.kube.kubesecrets import KubernetesSecretReader

    reader = KubernetesSecretReader(cluster, timeout=10.0)

    async def close() -> None:
        reader.close()

    closers.append(close)
    return reader


async def _open_db(url: str, attempts: int = 5) -> Any:
    """Open (creating and migrating on first start), retrying an unreachable server; refuse a
    corrupt SQLite file before anything reads it."""
    from empire.state.database import Database
    from empire.state.verify import check_sqlite_integrity

    for i in range(attempts):
        try:
            db = await Database.open(url)
            if db.dialect == "sqlite":
                try:
                    took = await check_sqlite_integrity(db)
                except BaseException:
                    await db.close()
                    raise
                logger.info("state database %s: integrity (quick_check) ok in %.2fs", db.describe(), took)
            return db
        except TemporaryError as exc:
            if i + 1 == attempts:
                raise
            logger.warning("state database not reachable yet (%s); retrying in %ds", exc, 2**i)
            await anyio.sleep(2**i)
    raise AssertionError("unreachable")  # pragma: no cover


async def build_daemon(
    settings: Settings,
    policy_file: str | Path | None = None,
    dry_run: bool = False,
    *,
    clock: Clock | None = None,
    surroundings: Surroundings | None = None,
) -> Daemon:
    """Assemble the daemon. `clock` is for tests (a `FakeClock`) and the simulation (a `ScaledClock`);
    `empire run` uses the system clock. `surroundings` replace the metric source and the cluster."""
    from empire.agent.kube.dryrun import DryRunExecutor
    from empire.agent.kube.kubeconfig import load_cluster_config
    from empire.agent.kube.scaler import KubernetesScaler
    from empire.agent.observers.none import NoSource
    from empire.agent.observers.prometheus import PrometheusObserver
    from empire.state.health import StateHealth
    from empire.state.store import SqlStateStore

    use_db = settings.policy_source == "database" and policy_file is None
    if not use_db:  # a bad policy file at start is a ConfigError: exit 2 with its errors
        source: Any = FilePolicySource(PolicyWatcher(settings.policy_path(policy_file)))
    url = settings.database_url_value
    db = await _open_db(url)
    logger.info("state database %s", mask_url(url))
    store = SqlStateStore(db)
    if use_db:
        source = await database_source(store)
    loaded = source.current
    logger.info("policy %s (version %s): %d targets", loaded.source, loaded.version, len(loaded.policy.targets))
    clock, monitor = clock or SystemClock(), Monitor()
    health = StateHealth(db, clock.now, on_change=monitor.loop.on_state_db)
    monitor.loop.on_state_db(health)
    info: dict[str, Any] = {}
    services: dict[str, Any] = {}

    closers: list[Callable[[], Awaitable[None]]] = [db.close]
    cluster = None
    observer: Any
    executor: Any
    workloads: Any
    if surroundings is not None:
        observer = surroundings.observer
        executor = workloads = surroundings.cluster
        info["metric_source"], info["cluster"] = surroundings.metric_source, surroundings.cluster_info
        logger.info("simulated surroundings: metrics from %s; cluster %s", surroundings.metric_source,
                    surroundings.cluster_info)  # fmt: skip
    elif settings.prometheus.url:
        observer = PrometheusObserver.from_settings(settings.prometheus)
        info["metric_source"] = f"prometheus {observer.url}"  # masked: /status is unauthenticated
        logger.info("metric source: Prometheus at %s", observer.url)
    else:
        observer = NoSource()
        info["metric_source"] = "none"
        logger.warning("no metric source configured (EMPIRE_PROMETHEUS__URL unset): every target reports "
                       "metrics_unavailable and its fallback applies (hold, or fixed replicas)")  # fmt: skip
    closers.append(observer.aclose)

    if surroundings is None:  # simulated surroundings named the executor above
        cluster = load_cluster_config(settings.kubernetes)
    if surroundings is None and cluster is not None:
        scaler = KubernetesScaler(cluster, timeout=settings.kubernetes.timeout, monitor=monitor,
                                  instance=settings.replica_id)  # fmt: skip
        executor = workloads = scaler
        closers.append(scaler.aclose)
        services["secret_reader"] = _secret_reader(cluster, closers)
        info["cluster"] = f"{mask_url(cluster.server)} ({cluster.source})"
        logger.info("Kubernetes API %s via %s", mask_url(cluster.server), cluster.source)
    elif surroundings is None:
        executor = workloads = DryRunExecutor()
        info["cluster"] = "none (dry-run pretend cluster)"
        logger.warning("no Kubernetes cluster (EMPIRE_KUBERNETES__MODE=%s found none): actions are decided and "
                       "journaled as dry_run against an in-memory pretend cluster", settings.kubernetes.mode)  # fmt: skip

    leader = leader_for(settings)
    info["leader_election"] = leader.name
    runner = ActionRunner(store, {ScaleTo: executor}, clock, monitor, replica=settings.replica_id, leader=leader,
                          state_health=health)  # fmt: skip
    jobs = PeriodicJobs(clock, monitor)
    jobs.state_health = health
    loop = ControlLoop(
        policy=loaded, observer=observer, workloads=workloads, runner=runner, store=store, clock=clock,
        monitor=monitor, leader=leader, replica=settings.replica_id, dry_run=dry_run, jobs=jobs, state_health=health,
        drive_jobs=surroundings is not None,
    )  # fmt: skip
    gate = _gate(settings, db, store, clock, cluster, closers)
    context = AppContext(monitor, loop, info, max_body_bytes=settings.http.max_body_bytes, store=store, gate=gate,
                         max_active_requests=settings.http.max_active_requests)  # fmt: skip
    context.status_sections["policy_reload_error"] = lambda: source.last_error
    context.status_sections["state_db"] = health.snapshot
    context.readiness["state_db"] = health.problem
    if loop.dry_run:
        logger.warning("dry run: decisions are journaled, no action is executed")
    daemon = Daemon(settings, clock, monitor, db, store, source, observer, workloads, runner, jobs, loop, leader,
                    context, closers=closers, services=services)  # fmt: skip
    (source.watcher if isinstance(source, FilePolicySource) else source).on_change = daemon.apply_policy
    daemon.schedule(PeriodicJob("retention", lambda _: timedelta(hours=1), retention_job(store, settings),
                                first_delay=timedelta(minutes=5)))  # fmt: skip
    context.status_sections["areas"] = lambda: dict(daemon.areas)
    context.degraded = lambda: [f"{name}: {state}" for name, state in daemon.areas.items() if state != "ok"]
    for module_name in AREA_MODULES:
        area = _load_area(module_name)
        if area is None:
            continue
        try:
            handle = area.build(daemon.deps())
        except Exception as exc:
            logger.exception("area %s failed to start; the daemon runs without it (degraded in /status and /readyz)",
                             area.name)  # fmt: skip
            daemon.areas[area.name] = f"failed: {mask_url(str(exc))}"
            continue
        daemon.add_area(area.name, handle)
    daemon.history = StatusHistory(lambda: daemon.policy().policy.targets)
    loop.tick_listeners.append(daemon.history.on_tick)
    sources = PageSources(context.status_body, daemon.history, store, db, lambda: daemon.policy().policy, clock.now)
    daemon.routes.extend(page_routes(sources))
    return daemon


def _load_area(module_name: str) -> Area | None:
    """The `AREA` of a module; None (logged) when it cannot be imported (an optional extra missing)."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        logger.error("area %s not loaded: %s", module_name, exc)
        return None
    except Exception as exc:
        logger.error("area %s not loaded: %s", module_name, exc)
        return None
    area: Area = module.AREA
    return area


def _gate(
    settings: Settings, db: Any, store: Any, clock: Clock, cluster: Any, closers: list[Callable[[], Awaitable[None]]]
) -> Gate:
    """Who may call the HTTP API and how often (`empire.agent.api.guard`)."""
    from empire.agent.api.auth import Authenticator
    from empire.agent.api.ratelimit import Buckets
    from empire.state.tokens import SqlTokenStore

    h = settings.http
    external = None
    if h.kubernetes_auth:
        if cluster is None:
            raise ConfigError("EMPIRE_HTTP__KUBERNETES_AUTH needs a Kubernetes cluster (EMPIRE_KUBERNETES__MODE)")
        import httpx

        from empire.agent.api.kube import KubernetesReviewer

        client = httpx.AsyncClient(**cluster.client_options(settings.kubernetes.timeout))
        closers.append(client.aclose)
        external = KubernetesReviewer(client)
        logger.info("HTTP API: ServiceAccount tokens accepted (TokenReview + SubjectAccessReview)")
    legacy = settings.ingest_token.get_secret_value() if settings.ingest_token is not None else None
    auth = Authenticator(SqlTokenStore(db), clock.now, legacy_ingest=legacy or None, ingest_paths=INGEST_PATHS,
                         external=external)  # fmt: skip
    protected = [p for p, on in (("/metrics", h.protect_metrics), ("/status", h.protect_status)) if on]
    if h.protect_status:  # the status page's data is /status's
        protected += DATA_PATHS
    return Gate(auth, store.audit, clock.now, rate=Buckets(h.rate_per_caller, h.rate_burst), protected=protected)


def retention_job(store: Any, settings: Settings) -> Callable[[datetime], Awaitable[None]]:
    """The hourly prune of old decisions, settled journal rows, audit rows and superseded models
    (`EMPIRE_RETENTION__*`), so the state DB does not grow without bound."""
    r = settings.retention

    def cutoff(now: datetime, days: float) -> datetime | None:
        return now - timedelta(days=days) if days > 0 else None

    async def prune(now: datetime) -> None:
        counts = await store.prune(
            decisions_before=cutoff(now, r.decisions_days), actions_before=cutoff(now, r.actions_days),
            audit_before=cutoff(now, r.audit_days), models_kept=r.models_kept,
        )  # fmt: skip
        if any(counts.values()):
            logger.info("retention: pruned %s", ", ".join(f"{n} {k}" for k, n in counts.items() if n))

    return prune


async def check_policy(daemon: Daemon) -> bool:
    """Poll the policy source once. A valid change is swapped in (the loop wakes up); a rejected
    one keeps the policy in force. Either way it is audited in the journal and counted in
    `empire_policy_reloads_total{result}`; the rejection reason is also in `/status`."""
    source, before = daemon.source, daemon.source.last_error
    changed = await source.check()
    now = daemon.clock.now()
    record = None
    if changed:
        daemon.monitor.loop.policy_reloads.labels("applied").inc()
        record = AuditRecord(now, daemon.settings.replica_id, "policy_applied", source.current.source,
                             {"version": source.current.version})  # fmt: skip
    elif source.last_error is not None and source.last_error != before:
        daemon.monitor.loop.policy_reloads.labels("rejected").inc()
        record = AuditRecord(now, daemon.settings.replica_id, "policy_rejected", source.where,
                             {"error": source.last_error, "kept_version": source.current.version})  # fmt: skip
    if record is not None:
        try:
            await daemon.store.audit(record)
        except Exception as exc:
            log_unless_reported(logger, exc, "could not journal the policy change: %s", exc)
    return changed


async def _watch_policy(daemon: Daemon) -> None:
    while True:
        await anyio.sleep(daemon.source.interval)
        try:
            await check_policy(daemon)
        except (TemporaryError, StateDbError) as exc:
            log_unless_reported(logger, exc, "policy poll failed; the policy in force stays: %s", exc)
        except Exception:
            logger.exception("policy watch failed; the policy in force stays")


async def keep_leadership(daemon: Daemon) -> None:
    """Renew (or compete for) the leadership every `EMPIRE_LEADER__RENEW_EVERY` seconds, between
    ticks; see `empire.agent.leader`. A change wakes the loop: a new leader acts at once, instead
    of up to a tick later, and a lost leadership is journaled at once."""
    every = daemon.settings.leader.renew_every
    while True:
        await anyio.sleep(every)
        try:
            leading = await daemon.leader.ensure()
        except Exception as exc:  # the tick reports and counts election failures
            logger.debug("lease keeper: %s", exc)
            continue
        if leading != daemon.loop.is_leader:
            daemon.loop.wake()


async def run_daemon(
    daemon: Daemon,
    *,
    once: bool = False,
    started: anyio.Event | None = None,
    on_stop: Callable[[], None] | None = None,
) -> int:
    """Serve and run the loop until SIGTERM/SIGINT (or one tick with `once`); shut down in order
    (module docstring). `on_stop` is called once, first thing, when the shutdown begins (a signal,
    the end of `once`, or a crash)."""
    s = daemon.settings
    app = build_app(daemon.context, daemon.routes)
    stopping = False
    tls = TlsFiles(s.http.tls_cert_file, s.http.tls_key_file) if s.http.tls_cert_file and s.http.tls_key_file else None
    sock = bind(s.http.host, s.http.port)
    failure: Exception | None = None  # `--once`: the state database went down during the tick
    begun = False

    def begin_stop() -> None:
        nonlocal begun
        if not begun:
            begun = True
            if on_stop is not None:
                on_stop()
            daemon.jobs.stop()

    async def signals(scope: anyio.CancelScope) -> None:
        nonlocal stopping
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
            async for sig in received:
                stopping = True
                logger.warning("%s received: finishing the action in flight, then stopping", signal.Signals(sig).name)
                begin_stop()
                scope.cancel()
                return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(signals, tg.cancel_scope)
            http_up = anyio.Event()
            limits = ConnectionLimits(s.http.header_timeout, s.http.body_timeout, s.http.keep_alive,
                                      s.http.max_connections)  # fmt: skip
            tg.start_soon(
                lambda: serve(app, s.http.host, s.http.port, started=http_up, sock=sock, limits=limits, tls=tls)
            )
            with anyio.fail_after(30):
                await http_up.wait()
            daemon.app = app
            if started is not None:
                started.set()
            await daemon.loop.start()
            if once:
                await daemon.loop.tick()
                health = getattr(daemon.db, "health", None)
                if health is not None and not health.up:
                    failure = health.error
                tg.cancel_scope.cancel()
                return 0
            if daemon.loop.drive_jobs:  # the periodic jobs run after each tick, on the loop's (simulated) clock
                daemon.jobs.follow(lambda: daemon.loop.is_leader)
            else:
                daemon.jobs.start(is_leader=lambda: daemon.loop.is_leader)
            tg.start_soon(_watch_policy, daemon)
            tg.start_soon(keep_leadership, daemon)
            for task in daemon.background:
                tg.start_soon(task)
            await daemon.loop.run()
    finally:
        begin_stop()
        with anyio.CancelScope(shield=True):
            await daemon.jobs.aclose()
            try:
                await daemon.leader.release()
            except Exception as exc:
                logger.debug("leader release: %s", exc)
            for close in reversed(daemon.closers):
                try:
                    await close()
                except Exception as exc:
                    logger.debug("close: %s", exc)
            if stopping:
                logger.warning("stopped cleanly")
            if failure is not None:  # exit 2 or 3 with the reason, not 0 (a smoke test must see it)
                raise failure
    return 0
