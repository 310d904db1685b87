"""Periodic jobs (model refits, tiering sweeps, generation planning, alert evaluation): one registry.

Other areas call `jobs.add("tiering-sweep", timedelta(hours=1), sweep)` with `async def sweep(now)`.
Two drivers run the same registry:

* `empire run` (wall clock) hands every job to an apscheduler 3.x `AsyncIOScheduler` with an
  interval trigger, `max_instances=1` (a slow refit never overlaps itself) and `coalesce=True`
  (missed runs after a pause collapse into one). apscheduler owns the wall-clock timing, jitter
  and misfire handling, which we would otherwise re-implement.
* the step-driven loop (`await loop.tick()` on a `FakeClock`: tests, the backtest) calls
  `run_due(now)`, which runs each job whose interval has elapsed *on the loop's clock*. apscheduler
  3.x cannot follow a fake clock (its triggers read the system time and its event loop sleeps in
  real time), so replaying 60 days would take 60 days; `run_due` makes the same jobs run at the
  same simulated instants, deterministically.

Either way a failing job is logged and counted (`empire_periodic_jobs_total{task,result}`); it never
stops the loop or the other jobs. While `state_health` says the state database is down, no job
runs (result `held`): jobs plan, move, prune and alert, and none of that can be journaled.

Shutdown (wall-clock mode): `stop()` at SIGTERM starts no new run; `aclose()` gives the runs in
flight `grace` seconds from the signal, then cancels them through an anyio cancel scope (never
`Task.cancel()`), so a state-DB unit of work in flight, shielded from cancellation, still commits or
rolls back whole; it waits up to `cancel_wait` seconds more for that, and only then shuts
apscheduler down (whose own shutdown cancels coroutine jobs at once, mid-statement).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import anyio

from empire.agent.monitor import Monitor
from empire.agent.ports import Clock
from empire.logrepeat import log_unless_reported

__all__ = ["Job", "JobFunc", "PeriodicJobs"]

logger = logging.getLogger(__name__)

JobFunc = Callable[[datetime], Awaitable[None]]


@dataclass
class Job:
    name: str
    interval: timedelta
    func: JobFunc
    leader_only: bool = True
    last_run: datetime | None = None
    first_delay: timedelta = timedelta(0)


class PeriodicJobs:
    def __init__(self, clock: Clock, monitor: Monitor | None = None) -> None:
        self.clock = clock
        self.monitor = monitor or Monitor()
        self.jobs: dict[str, Job] = {}
        self._scheduler: Any = None
        self._is_leader: Callable[[], bool] = lambda: True
        self._created = clock.now()
        self._running: dict[asyncio.Task[Any], tuple[str, anyio.CancelScope]] = {}  # wall-clock runs in flight
        self._stopped_at: float | None = None  # time.monotonic() of stop(): no new run after it
        self.state_health: Any = None  # a `StateHealth`: no job runs while the state database is down

    def add(
        self,
        name: str,
        interval: timedelta,
        func: JobFunc,
        *,
        leader_only: bool = True,
        first_delay: timedelta = timedelta(0),
    ) -> None:
        """Register (or replace) a job. `leader_only` jobs are skipped on standby replicas."""
        if interval.total_seconds() <= 0:
            raise ValueError(f"job {name!r}: interval must be positive")
        self.jobs[name] = Job(name, interval, func, leader_only, first_delay=first_delay)
        if self._scheduler is not None:
            self._schedule(self.jobs[name])

    def remove(self, name: str) -> None:
        self.jobs.pop(name, None)
        if self._scheduler is not None and self._scheduler.get_job(name):
            self._scheduler.remove_job(name)

    async def run_job(self, job: Job) -> bool:
        now = self.clock.now()
        job.last_run = now
        if job.leader_only and not self._is_leader():
            self.monitor.loop.jobs.labels(job.name, "standby").inc()
            return False
        if self.state_health is not None and not self.state_health.up:
            self.monitor.loop.jobs.labels(job.name, "held").inc()
            return False
        try:
            await job.func(now)
        except Exception as exc:
            log_unless_reported(logger, exc, "periodic job %s failed: %s", job.name, exc, level=logging.ERROR,
                                traceback=True)  # fmt: skip
            self.monitor.loop.jobs.labels(job.name, "error").inc()
            return False
        self.monitor.loop.jobs.labels(job.name, "ok").inc()
        return True

    def due(self, now: datetime) -> list[Job]:
        out = []
        for job in self.jobs.values():
            if job.last_run is None:
                if now - self._created >= job.first_delay:
                    out.append(job)
            elif now - job.last_run >= job.interval:
                out.append(job)
        return out

    async def run_due(self, now: datetime | None = None) -> list[str]:
        """Run every job whose interval elapsed on the clock (step-driven mode)."""
        ran = []
        for job in self.due(now or self.clock.now()):
            await self.run_job(job)
            ran.append(job.name)
        return ran

    def follow(self, is_leader: Callable[[], bool]) -> None:
        """Run `leader_only` jobs only while `is_leader()` (either driver)."""
        self._is_leader = is_leader

    # -- wall-clock mode -----------------------------------------------------------------
    def start(self, is_leader: Callable[[], bool] = lambda: True) -> None:
        """Hand the jobs to apscheduler on the running asyncio loop."""
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.follow(is_leader)
        self._scheduler = AsyncIOScheduler(timezone="UTC")
        for job in self.jobs.values():
            self._schedule(job)
        self._scheduler.start()

    def _schedule(self, job: Job) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        async def call() -> None:
            task = asyncio.current_task()
            if self._stopped_at is not None or task is None:
                return  # queued by apscheduler just before stop(): start nothing at shutdown
            with anyio.CancelScope() as scope:
                self._running[task] = (job.name, scope)
                try:
                    await self.run_job(job)
                finally:
                    del self._running[task]

        start = self.clock.now() + job.first_delay
        self._scheduler.add_job(
            call, IntervalTrigger(seconds=job.interval.total_seconds(), start_date=start), id=job.name,
            name=job.name, max_instances=1, coalesce=True, misfire_grace_time=max(1, int(job.interval.total_seconds())),
            replace_existing=True, next_run_time=start,
        )  # fmt: skip

    def stop(self) -> None:
        """Start no new run from now on (SIGTERM); runs in flight go on, `aclose` waits for them."""
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        if self._scheduler is not None:
            self._scheduler.pause()

    def shutdown(self) -> None:
        """Stop apscheduler (it cancels the coroutine jobs still running: `aclose` comes first)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    async def aclose(self, grace: float = 10.0, cancel_wait: float = 12.0) -> None:
        """Let the runs in flight finish (a refit writing its model, a sweep finishing a move) before
        the caller closes the database under them: `grace` seconds from `stop()`, then cancelled, and
        `cancel_wait` seconds more for a cancelled run's DB unit of work to end (it is bounded by the
        SQLite busy timeout, 10 s). A run still going after that is logged, not waited for."""
        self.stop()
        assert self._stopped_at is not None
        if self._running:
            logger.info("waiting for %d periodic job(s) in flight", len(self._running))
            left = max(0.0, self._stopped_at + grace - time.monotonic())
            _done, pending = await asyncio.wait(set(self._running), timeout=left)
            names = {task: self._running[task][0] for task in pending if task in self._running}
            for task, name in names.items():
                logger.warning("periodic job %s still running %.0fs after stop: cancelled", name, grace)
                self._running[task][1].cancel()
            if names:
                _done, pending = await asyncio.wait(set(names), timeout=cancel_wait)
                for task in pending:
                    logger.error("periodic job %s did not end %.0fs after it was cancelled", names[task], cancel_wait)
        self.shutdown()
