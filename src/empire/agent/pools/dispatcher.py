"""The dispatcher: runs queued jobs through the pools, hundreds at a time, exactly once.

Structure (one anyio task group):
- the *feeder* claims jobs (a batch per transaction) whenever workers are idle;
- *workers* (`max_in_flight` of them) each carry one job: route -> slot -> token -> submit ->
  poll -> publish -> record;
- the *writer* applies the jobs' transitions in batches (one transaction for many jobs);
- the *heartbeat* extends this replica's leases (one UPDATE) and its shared concurrency slots.

Exactly once: the claim leases a job to this replica; the provider gets the job's idempotency
key, so resubmitting after a crash returns the provider's existing job; a replica that lost a
lease cannot overwrite the new owner's writes (every transition is guarded by the lease owner).
A crash loses at most the unflushed writes of the last few milliseconds, and their jobs are
re-claimed after the lease expires: a `submitted` job resumes polling, a `leased` one resubmits
under the same key. A provider that ignores idempotency keys (`http.idempotency: ignored`) would
generate such a job twice, so for it the intent is journaled first (`submitting`, flushed before
the request leaves), and a job found in that state, or whose submission got no answer, is looked
up by its reference or marked `unknown_outcome` for a person (`_settle`), never resent blindly.

Dead keys: a 401/403 cools only the account down (one dead key must not kill jobs that other
accounts can serve); the job re-routes without spending an attempt, and its row notes why
(`Noted`). When every account the job may use (its providers' and their fallbacks') has had its
key rejected, no wait can help: the job is dead-lettered with those errors (`auth`), so the queue
does not fill with jobs that wait forever and `pools run --drain` ends. Ordinary cooldowns (429,
5xx) pass by themselves: jobs wait for the earliest account, as before.

Rate limits: workers that chose the same account queue on its lock, and only the head of that
queue asks the limiter, so the limiter is asked once per token, not once per waiting job.
The wall clock (`time.monotonic`, `anyio.sleep`) is used here, at the edge; every decision
(routing, breaker, retry, budget) is a pure function the tests drive with a fake clock.

Inside `empire run` (`pools.setup`) the daemon drains accounts (`set_drained`), holds paused
personas' jobs in the queue (`JobQueue.held_personas`) and stops claiming while the agent is in
dry run (`paused`).
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus

from empire.agent.clock import SystemClock
from empire.agent.pools.accounts import AccountLimits, PoolRegistry
from empire.agent.pools.backoff import Verdict, decide_retry
from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.errors import (
    AuthFailed,
    ErrorClass,
    GenerationFailed,
    ProviderTimeout,
    UnexpectedStatus,
    error_class_of,
)
from empire.agent.pools.jobs import Job, JobState
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.providers.base import JobProvider, JobRequest, PollResult
from empire.agent.pools.queue import (
    DeadLettered,
    JobQueue,
    Noted,
    OutcomeUnknown,
    Released,
    Rescheduled,
    Submitted,
    Submitting,
    Succeeded,
    Update,
)
from empire.agent.pools.routing import Route, route, without
from empire.agent.ports import Clock, RateLimiter
from empire.errors import EmpireError, PermanentError, StateDbError, TemporaryError
from empire.logrepeat import log_unless_reported
from empire.policies.generation import Provider

__all__ = ["Dispatcher", "DispatcherOptions", "Publisher"]

logger = logging.getLogger(__name__)


# A job waits this long at most for an account's next token; a longer wait (a provider's
# per-minute window is used up) sends it back to routing, which picks an account with room or
# waits for the first that has some. Sleeping on it instead kept a few jobs on one key for a whole
# minute while the others had room (1,200 jobs on 5 keys of 120/min took 121 s instead of 72).
REROUTE_AFTER = 1.0


@dataclass(frozen=True)
class DispatcherOptions:
    owner: str  # this replica's id: the lease owner
    max_in_flight: int = 256  # jobs carried at once (workers)
    lease_seconds: float = 60.0
    claim_batch: int = 64
    idle_poll: float = 0.5  # seconds between claims while the queue has nothing due (doubling to 4x while empty)
    flush_every: float = 0.02  # the writer's batching window
    rate_margin: float = 0.25  # seconds of tokens kept in reserve against send/arrive jitter
    stop_when_empty: bool = False  # exit once no job is pending anywhere (benchmarks, `pools run --drain`)
    seed: int | None = None  # backoff jitter


class Publisher(Protocol):
    """Turns a finished generation into stored content (`pools.publish.ContentPublisher`). Returns
    what goes into the job's result; raises a classified error to retry the job."""

    async def publish(self, job: Job, provider: JobProvider, account: str, result: PollResult) -> dict[str, Any]: ...


class _Stop(Exception):
    """The dispatcher is stopping: give the job back."""


class Dispatcher:
    def __init__(
        self,
        providers: tuple[Provider, ...],
        adapters: Mapping[str, JobProvider],
        queue: JobQueue,
        limiter: RateLimiter,
        options: DispatcherOptions,
        metrics: PoolMetrics | None = None,
        publisher: Publisher | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.pools = PoolRegistry(providers, options.rate_margin)
        self.adapters = dict(adapters)
        self.queue = queue
        self.limiter = limiter
        self.opt = options
        self.metrics = metrics
        self.publisher = publisher
        self.clock = clock or SystemClock()
        self._rng = random.Random(options.seed)
        self._pending: list[Update] = []
        self._flush_wanted = anyio.Event()
        self._has_pending = anyio.Event()  # the writer sleeps until there is something to write
        self._worker_free = anyio.Event()
        self._slot_waiters: dict[frozenset[str], deque[anyio.Event]] = {}  # by the accounts they can use
        self._breaker_opened = anyio.Event()  # wakes jobs waiting out a cooldown: re-check routing
        self._stopping = anyio.Event()
        self._locks: dict[str, anyio.Lock] = {}
        self._flush_lock = anyio.Lock()
        self._holders: dict[str, set[str]] = {}
        self._busy = 0
        self.paused: Callable[[], bool] | None = None  # True: claim nothing new (the daemon's dry run)
        self.stats = {
            "claimed": 0,
            "succeeded": 0,
            "dead": 0,
            "retried": 0,
            "rerouted": 0,
            "released": 0,
            "retried_now": 0,
            "unknown_outcome": 0,
        }
        self.cpu_seconds = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def update_policy(
        self,
        providers: tuple[Provider, ...],
        adapters: Mapping[str, JobProvider],
        limits: BudgetLimits | None = None,
    ) -> None:
        """Apply a reloaded policy: limits and routing at once; accounts keep their health."""
        self.pools.update(providers)
        self.adapters.update(adapters)
        if limits is not None:
            self.queue.limits = limits
        if self.metrics is not None:
            self.metrics.configure(providers)
        self._sync_key_rejected()  # a disabled account's state is gone: its gauge reads 0

    def set_drained(self, accounts: frozenset[str]) -> None:
        """Route no new job to these accounts ("provider/account"); jobs in flight there finish."""
        if accounts != self.pools.drained:
            logger.info("drained accounts: %s", ", ".join(sorted(accounts)) or "none")
        self.pools.drained = frozenset(accounts)
        if self.metrics is not None:
            self.metrics.on_drained(accounts)

    def stop(self) -> None:
        self._stopping.set()
        self._breaker_opened.set()
        self._has_pending.set()

    def breakers(self) -> dict[str, dict[str, Any]]:
        """Accounts whose breaker is open or whose key was rejected (`PoolRegistry.breakers`). It
        lives in this dispatcher's memory: only this process can report it."""
        return self.pools.breakers(time.monotonic(), self.clock.now())

    async def aclose(self) -> None:
        """Close the provider adapters (their HTTP sessions). The limiter belongs to the caller."""
        for adapter in self.adapters.values():
            try:
                await adapter.aclose()
            except Exception as exc:  # closing must not mask the reason we are closing
                logger.warning("closing provider %s failed: %s", adapter.name, exc)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[Job](self.opt.max_in_flight)
        cpu0 = time.process_time()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer)
                tg.start_soon(self._heartbeat)
                async with anyio.create_task_group() as workers:
                    for _ in range(self.opt.max_in_flight):
                        workers.start_soon(self._worker, receive.clone())
                    receive.close()
                    task_status.started()
                    await self._feeder(send)
                self._stopping.set()
                self._has_pending.set()
                self._flush_wanted.set()
        finally:
            self.cpu_seconds += time.process_time() - cpu0

    # -- feeder ----------------------------------------------------------------------------
    async def _feeder(self, send: anyio.abc.ObjectSendStream[Job]) -> None:
        empty = 0  # claims in a row that found nothing
        async with send:
            while not self.stopping:
                idle = self.opt.max_in_flight - self._busy
                want = min(idle, self.opt.claim_batch)
                if self.paused is not None and self.paused():
                    await self._sleep(self.opt.idle_poll)
                    continue
                if want < min(self.opt.claim_batch, max(1, self.opt.max_in_flight // 8)):
                    self._worker_free = anyio.Event()
                    with anyio.move_on_after(self.opt.idle_poll):
                        await self._worker_free.wait()
                    continue
                try:
                    jobs = await self.queue.claim(self.opt.owner, self.clock.now(), want, self.opt.lease_seconds)
                except (TemporaryError, StateDbError) as exc:
                    log_unless_reported(logger, exc, "claiming jobs failed, retrying: %s", exc)
                    await self._sleep(self.opt.idle_poll)
                    continue
                self.stats["claimed"] += len(jobs)
                self._busy += len(jobs)  # counted busy from the claim; a worker takes it over
                for job in jobs:
                    await send.send(job)
                empty = 0 if jobs else empty + 1
                if len(jobs) < want:
                    if self.opt.stop_when_empty and not jobs and self._busy == 0 and await self._nothing_pending():
                        return
                    # an empty queue is asked less and less often, up to 4 idle polls apart: each
                    # claim is a write transaction, and two a second were most of an idle
                    # dispatcher's CPU (a job submitted meanwhile waits 2 s at most, by default)
                    await self._sleep(self.opt.idle_poll * min(4, 2 ** max(0, empty - 1)))

    async def _nothing_pending(self) -> bool:
        await self._flush()
        return await self.queue.open_jobs() == 0  # paused personas' jobs wait for their release, not for us

    async def _sleep(self, seconds: float) -> None:
        with anyio.move_on_after(max(0.0, seconds)):
            await self._stopping.wait()

    # -- workers -----------------------------------------------------------------------------
    async def _worker(self, receive: anyio.abc.ObjectReceiveStream[Job]) -> None:
        async with receive:
            async for job in receive:
                try:
                    if self.stopping:
                        self._emit(Released(job.id, self.opt.owner, self.clock.now()))
                        continue
                    await self._carry(job)
                except _Stop:
                    self.stats["released"] += 1
                    self._emit(Released(job.id, self.opt.owner, self.clock.now()))
                except Exception as exc:  # a bug must not kill the dispatcher: the job backs off
                    logger.exception("job %s: unexpected error", job.id)
                    self._failed(job, job.provider, exc, ErrorClass.unknown)
                finally:
                    self._busy -= 1
                    self._worker_free.set()

    def _provider_order(self, job: Job) -> list[str]:
        return self.pools.route_order(job.providers)

    async def _carry(self, job: Job) -> None:
        if job.state is JobState.submitted and job.provider_job_id and job.account:
            lim = self.pools.limits.get(f"{job.provider}/{job.account}")
            if lim is not None and job.provider in self.adapters:
                await self._hold_slot(lim, job, force=True)
                try:
                    await self._follow(job, lim, job.provider_job_id, time.monotonic())
                finally:
                    await self._release_slot(lim, job)
                return
            job = replace(job, provider_job_id=None)  # its account is gone: resubmit under the same key
        if job.state is JobState.submitting:  # the last owner died sending it to a provider that ignores keys
            job = await self._settle(job, "the last owner stopped while submitting it")
            if job is None:
                return
        if not self._provider_order(job):
            self._dead(job, job.provider, PermanentError(f"no configured provider among {list(job.providers)}"),
                       ErrorClass.bad_request, job.attempts + 1)  # fmt: skip
            return
        avoid: str | None = None  # the account whose 5xx the job is re-routed away from
        while True:
            try:
                lim = await self._acquire_account(job, avoid)
            except AuthFailed as exc:  # every key it may use was rejected: waiting cannot help
                self._dead(job, job.provider, exc, ErrorClass.auth, job.attempts + 1)
                return
            try:
                if lim.provider != job.provider and self.queue.limits.active:
                    ok = await self.queue.reserve_for(job.id, self.opt.owner, lim.provider, self.clock.now())
                    if not ok:
                        raise _Stop  # the fallback has no budget left: release; the claim re-checks later
                    job = replace(job, provider=lim.provider)
                adapter = self.adapters[lim.provider]
                if adapter.ignores_idempotency():  # the intent is durable before the request leaves
                    self._emit(Submitting(job.id, self.opt.owner, lim.provider, lim.name, self.clock.now()))
                    await self._flush()
                    job = replace(job, state=JobState.submitting, provider=lim.provider, account=lim.name)
                t0 = time.monotonic()
                try:
                    sub = await adapter.submit(lim.name, self._request(job))
                except Exception as exc:
                    if adapter.ignores_idempotency() and error_class_of(exc) in (
                        ErrorClass.timeout,
                        ErrorClass.connection,
                    ):
                        # no answer: it may have arrived. `_settle` holds a slot of its own to follow it
                        self._after_failure(job, lim, exc)
                        await self._release_slot(lim, job)
                        settled = await self._settle(job, str(exc))
                        if settled is None:
                            return
                        job = settled
                        continue
                    if self._after_failure(job, lim, exc):
                        continue  # account-level: re-route now
                    retry = self._retry_now(job, lim, exc)
                    if retry is None:
                        self._failed(job, lim.provider, exc, error_class_of(exc))
                        return
                    job, avoid = retry, lim.key
                    continue
                self._account_ok(lim)
                if self.metrics:
                    self.metrics.on_submitted(lim.provider, lim.name)
                self._emit(Submitted(job.id, self.opt.owner, lim.provider, lim.name, sub.provider_job_id,
                                     lim.cost, self.clock.now()))  # fmt: skip
                job = replace(job, state=JobState.submitted, account=lim.name, provider=lim.provider)
                await self._follow(job, lim, sub.provider_job_id, t0, sub.done)
                return
            finally:
                await self._release_slot(lim, job)

    async def _settle(self, job: Job, why: str) -> Job | None:
        """A submission to a provider that ignores idempotency keys may have reached it (`why`).
        Never send it again blindly: ask the provider by our reference when it can be asked (found:
        follow that job; not found: the job, to submit), else mark it `unknown_outcome` for a person
        (`empire jobs resolve`). None: the job is taken care of here."""
        adapter = self.adapters.get(job.provider)
        lim = self.pools.limits.get(f"{job.provider}/{job.account}")
        if adapter is not None and lim is not None and adapter.can_look_up():
            error: Exception | None = None
            for attempt in range(3):
                try:
                    pjid = await adapter.lookup(lim.name, job.submit_key)
                except EmpireError as exc:
                    error = exc
                    await self._sleep(2.0**attempt)
                    if self.stopping:
                        raise _Stop from None
                    continue
                if pjid is None:
                    logger.info("job %s: %s did not receive it (lookup); submitting", job.id, lim.key)
                    return replace(job, state=JobState.leased)
                logger.info("job %s: found on %s as %s (lookup); following it", job.id, lim.key, pjid)
                self._emit(Submitted(job.id, self.opt.owner, lim.provider, lim.name, pjid, lim.cost, self.clock.now()))
                job = replace(job, state=JobState.submitted, provider_job_id=pjid)
                await self._hold_slot(lim, job, force=True)
                try:
                    await self._follow(job, lim, pjid, time.monotonic())
                finally:
                    await self._release_slot(lim, job)
                return None
            why = f"{why}; the lookup failed: {error}"
        else:
            why = f"{why}; {job.provider} ignores idempotency keys and has no lookup_url"
        logger.warning("job %s: outcome unknown (%s): resolve it with `empire jobs resolve %s`", job.id, why, job.id)
        self.stats["unknown_outcome"] += 1
        self._emit(OutcomeUnknown(job.id, self.opt.owner, f"may have been submitted to {job.provider}/{job.account}: "
                                  f"{why}", self.clock.now()))  # fmt: skip
        return None

    def _request(self, job: Job) -> JobRequest:
        r = job.request
        return JobRequest(
            key=job.submit_key, prompt=str(r.get("prompt", "")), persona=str(r.get("persona", job.persona or "")),
            genre=str(r.get("genre", "")), title=str(r.get("title", "")),
        )  # fmt: skip

    async def _follow(self, job: Job, lim: AccountLimits, pjid: str, t0: float, done: PollResult | None = None) -> None:
        adapter = self.adapters[lim.provider]
        interval, deadline = adapter.poll_interval(), t0 + adapter.job_timeout()
        # first look just after a job on this account usually finishes (latency EWMA): most jobs are
        # then done at the first poll; after that, every interval
        expected = self.pools.states[lim.key].latency_ewma
        wait = max(interval, 1.1 * expected - (time.monotonic() - t0)) if expected else interval
        result = done
        last_running = t0  # the job was surely not done before it was submitted
        while result is None or result.status == "running":
            if self.stopping:
                raise _Stop
            if time.monotonic() > deadline:
                exc = ProviderTimeout(f"{lim.key}: no result after the job timeout")
                self._failed(job, lim.provider, exc, ErrorClass.generation_failed)
                return
            await self._sleep(min(wait, max(0.0, deadline - time.monotonic()) + 0.001))
            wait = interval
            if self.stopping:
                raise _Stop
            try:
                asked = time.monotonic()
                result = await adapter.poll(lim.name, pjid)
                if result.status == "running":
                    last_running = asked
            except TemporaryError as exc:
                logger.debug("poll %s on %s: %s", job.id, lim.key, exc)
                continue
            except UnexpectedStatus as exc:  # maybe done under another name: never generate it again
                self._dead(job, lim.provider, exc, ErrorClass.bad_request, job.attempts + 1)
                return
            except PermanentError as exc:
                self._failed(job, lim.provider, GenerationFailed(str(exc)), ErrorClass.generation_failed)
                return
        if result.status == "failed":
            self._failed(job, lim.provider, GenerationFailed(result.error or "failed"), ErrorClass.generation_failed)
            return
        latency = time.monotonic() - t0
        # it finished between the last "running" answer and this one: learn the midpoint, not the
        # moment we happened to look (that would feed our own polling delay back into the estimate)
        self.pools.states[lim.key].observe_latency(((last_running - t0) + latency) / 2)
        payload: dict[str, Any] = {"meta": result.meta, "url": result.result_url, "account": lim.name}
        if self.publisher is not None:
            try:
                payload = {**payload, **await self.publisher.publish(job, adapter, lim.name, result)}
            except EmpireError as exc:
                self._failed(job, lim.provider, exc, error_class_of(exc))
                return
        self._emit(Succeeded(job.id, self.opt.owner, payload, lim.cost, self.clock.now()))
        self.stats["succeeded"] += 1
        if self.metrics:
            self.metrics.on_succeeded(lim.provider, lim.name, latency, lim.cost)

    # -- routing, slots and tokens ---------------------------------------------------------
    async def _acquire_account(self, job: Job, avoid: str | None = None) -> AccountLimits:
        """`avoid`: an account to pass over when another can take the job now (its last 5xx)."""
        order = self._provider_order(job)
        noted = False
        while True:
            if self.stopping:
                raise _Stop
            now = time.monotonic()
            groups = self.pools.candidates(order, now)
            decision = route(groups, now)
            if avoid is not None and isinstance(decision, Route) and decision.candidate.key == avoid:
                other = route(without(groups, avoid), now)
                if isinstance(other, Route) and other.candidate.provider == decision.candidate.provider:
                    decision = other  # another account of the same provider; never a fallback for it
            if not isinstance(decision, Route):
                rejected = self.pools.rejected_keys(order, now)
                if rejected is not None:
                    errors = "; ".join(st.rejected or st.key for st in rejected)
                    raise AuthFailed(f"every key was rejected: {errors}")
                if decision.for_slot:
                    accounts = frozenset(c.key for g in self.pools.candidates(order, now) for c in g.accounts)
                    timeout = 1.0 if decision.until is None else min(5.0, max(0.001, decision.until - now))
                    await self._wait_for_slot(accounts, timeout)
                else:  # a cooldown (or nothing at all): wake early when another breaker opens
                    if not noted and decision.until is not None and decision.until - now >= 1.0:
                        noted = self._note_wait(job, order, now)
                    if self._breaker_opened.is_set() and not self.stopping:
                        self._breaker_opened = anyio.Event()
                    with anyio.move_on_after(
                        1.0 if decision.until is None else min(5.0, max(0.001, decision.until - now))
                    ):
                        await self._breaker_opened.wait()
                continue
            c = decision.candidate
            lim = self.pools.limits[f"{c.provider}/{c.account}"]
            if not await self._hold_slot(lim, job):
                self.pools.states[lim.key].slots_full_until = time.monotonic() + 0.05
                continue
            try:
                got = await self._take_token(lim)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self._release_slot(lim, job)
                raise
            if got:
                self.pools.states[lim.key].served += 1
                return lim
            await self._release_slot(lim, job)

    async def _wait_for_slot(self, accounts: frozenset[str], seconds: float) -> None:
        """Wait until a slot frees on one of `accounts`, or `seconds` pass. A freed slot wakes one
        waiter that can use it (FIFO), not every waiting worker: one event for all woke a few
        hundred workers per finished job, each routing again to find the slot taken (the
        dispatcher's CPU per job tripled on a 4-concurrent pool)."""
        event = anyio.Event()
        queue = self._slot_waiters.setdefault(accounts, deque())
        queue.append(event)
        try:
            with anyio.move_on_after(seconds):
                await event.wait()
        finally:
            if not event.is_set():
                queue.remove(event)

    def _wake_slot_waiter(self, key: str) -> None:
        for accounts, queue in self._slot_waiters.items():
            if key in accounts and queue:
                queue.popleft().set()
                return

    async def _take_token(self, lim: AccountLimits) -> bool:
        st = self.pools.states[lim.key]
        lock = self._locks.setdefault(lim.key, anyio.Lock())
        async with lock:
            while True:
                if self.stopping:
                    raise _Stop
                if st.cooling(time.monotonic()):
                    return False
                wait = await self.limiter.try_acquire(lim.key, lim.rate, lim.burst, lim.window)
                if wait <= 0:
                    return True
                st.token_ready_at = time.monotonic() + wait
                if wait > REROUTE_AFTER:  # a full window: another account may have room now
                    return False
                await self._sleep(wait)

    async def _hold_slot(self, lim: AccountLimits, job: Job, force: bool = False) -> bool:
        st = self.pools.states[lim.key]
        st.in_flight += 1  # counted before the await: concurrent workers see it
        holder = f"{self.opt.owner}:{job.id}"
        try:
            ok = await self.limiter.acquire_slot(lim.key, holder, lim.max_concurrent, self.opt.lease_seconds)
        except BaseException:
            st.in_flight -= 1
            raise
        if not ok and not force:
            st.in_flight -= 1
            return False
        self._holders.setdefault(lim.key, set()).add(holder)
        if self.metrics:
            self.metrics.on_in_flight(lim.provider, lim.name, st.in_flight)
        return True

    async def _release_slot(self, lim: AccountLimits, job: Job) -> None:
        holder = f"{self.opt.owner}:{job.id}"
        held = self._holders.get(lim.key, set())
        if holder not in held:
            return
        held.discard(holder)
        st = self.pools.states.get(lim.key)
        if st is not None:
            st.in_flight = max(0, st.in_flight - 1)
            if self.metrics:
                self.metrics.on_in_flight(lim.provider, lim.name, st.in_flight)
        self._wake_slot_waiter(lim.key)
        try:
            await self.limiter.release_slot(lim.key, holder)
        except EmpireError as exc:  # the slot expires by itself
            logger.warning("releasing a slot on %s failed: %s", lim.key, exc)

    def _note_wait(self, job: Job, order: list[str], now: float) -> bool:
        """Note on the job's row why it waits, when every account it may use cools down."""
        wall = self.clock.now()
        why = self.pools.wait_reason(order, now, wall)
        if why is not None:
            self._emit(Noted(job.id, self.opt.owner, why[0], why[1].value, wall))
        return why is not None

    # -- outcomes ------------------------------------------------------------------------------
    def _account_ok(self, lim: AccountLimits) -> None:
        st = self.pools.states[lim.key]
        rejected = st.key_rejected
        self.pools.succeeded(lim.key, time.monotonic())
        if rejected:  # the key works again (or a late answer said so): clear the gauge now
            self._sync_key_rejected()

    def _sync_key_rejected(self) -> None:
        if self.metrics is not None:
            self.metrics.on_key_rejected(self.pools.rejected_accounts())

    def _after_failure(self, job: Job, lim: AccountLimits, exc: Exception) -> bool:
        """Record a failed submit; True when the job should be routed again right away."""
        cls = error_class_of(exc)
        st = self.pools.states[lim.key]
        retry_after = exc.delay if isinstance(exc, TemporaryError) else None
        rejected = st.key_rejected
        cause = self.pools.failed(lim.key, cls, time.monotonic(), retry_after, str(exc))
        if st.key_rejected != rejected:  # marked (401/403) or cleared (a probe got past authentication)
            self._sync_key_rejected()
        if self.metrics:
            self.metrics.on_failed(lim.provider, lim.name, cls)
            if cause is not None:
                self.metrics.on_cooldown(lim.provider, lim.name, cause)
        if cause is not None:
            logger.warning("account %s cools down (%s) until +%.1fs", lim.key, cause.value,
                           st.open_until - time.monotonic())  # fmt: skip
            self._breaker_opened.set()
        if cls.account_level:
            self.stats["rerouted"] += 1
            self._emit(Noted(job.id, self.opt.owner, f"{exc}; re-routed", cls.value, self.clock.now()))
            return True
        return False

    def _retry_now(self, job: Job, lim: AccountLimits, exc: Exception) -> Job | None:
        """A 5xx answer to a submission (no Retry-After): the job goes to another account at once,
        spending an attempt, instead of back to the queue. The answer says the provider did not
        take the job; which key hit the error is chance, and the account's breaker (not the job's
        own backoff) is what keeps a failing provider from being hammered (`health`). Sending it
        back to the queue cost a claim round trip, and the retries' backoff left the last seconds
        of a run at half rate. None: back off through the queue as before (a timeout, which may
        have reached the provider; a Retry-After; the last attempt)."""
        if error_class_of(exc) is not ErrorClass.server_error or getattr(exc, "delay", None) is not None:
            return None
        policy = self.pools.providers[lim.provider].retry if lim.provider in self.pools.providers else None
        if policy is None or job.attempts + 1 >= policy.max_attempts:
            return None
        self.stats["retried_now"] += 1
        self._emit(Noted(job.id, self.opt.owner, f"{exc}; retried on another account", ErrorClass.server_error.value,
                         self.clock.now()))  # fmt: skip
        return replace(job, attempts=job.attempts + 1)

    def _failed(self, job: Job, provider: str, exc: BaseException, cls: ErrorClass) -> None:
        policy = self.pools.providers[provider].retry if provider in self.pools.providers else None
        retry_after = exc.delay if isinstance(exc, TemporaryError) else None
        if policy is None:
            self._dead(job, provider, exc, cls, job.attempts + 1)
            return
        decision = decide_retry(cls, job.attempts, policy, self._rng, retry_after)
        if decision.verdict is Verdict.dead:
            self._dead(job, provider, exc, cls, decision.attempts)
            return
        request = None
        if cls is ErrorClass.generation_failed:  # the provider's job failed: a fresh key asks for a new one
            request = {**job.request, "key_generation": int(job.request.get("key_generation", 0)) + 1}
        now = self.clock.now()
        self.stats["retried"] += 1
        self._emit(Rescheduled(job.id, self.opt.owner, decision.attempts, now + timedelta(seconds=decision.delay),
                               str(exc), cls.value, now, request))  # fmt: skip

    def _dead(self, job: Job, provider: str, exc: BaseException, cls: ErrorClass, attempts: int) -> None:
        logger.warning("job %s dead-lettered after %d attempts: %s", job.id, attempts, exc)
        self.stats["dead"] += 1
        if self.metrics:
            self.metrics.on_dead(provider)
        self._emit(DeadLettered(job.id, self.opt.owner, attempts, str(exc), cls.value, self.clock.now()))

    # -- writer and heartbeat ----------------------------------------------------------------
    def _emit(self, update: Update) -> None:
        self._pending.append(update)
        self._has_pending.set()
        if len(self._pending) >= 256:
            self._flush_wanted.set()

    async def _flush(self) -> None:
        async with self._flush_lock:  # one writer at a time keeps each job's transitions in order
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    await self.queue.apply(batch)
                except (TemporaryError, StateDbError) as exc:
                    log_unless_reported(
                        logger, exc, "recording %d job transitions failed, retrying: %s", len(batch), exc
                    )
                    self._pending[0:0] = batch
                    await anyio.sleep(0.5)

    async def _writer(self) -> None:
        """Batches transitions: from the first pending one, `flush_every` (or 256 of them), then one
        transaction. It sleeps while nothing is pending: waking every `flush_every` to find
        nothing cost an idle dispatcher 15 ms of CPU a second (most of its CPU per job at 10 jobs/s)."""
        while True:
            if not self._pending and not self.stopping:
                await self._has_pending.wait()
            self._has_pending = anyio.Event()
            with anyio.move_on_after(self.opt.flush_every):
                await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            await self._flush()
            if self.stopping and self._busy == 0 and not self._pending:
                return

    async def _heartbeat(self) -> None:
        every = max(0.05, self.opt.lease_seconds / 3)
        while not (self.stopping and self._busy == 0):
            await self._sleep(every)
            try:
                await self.queue.heartbeat(self.opt.owner, self.clock.now(), self.opt.lease_seconds)
                for key, holders in self._holders.items():
                    if holders:
                        await self.limiter.renew_slots(key, list(holders), self.opt.lease_seconds)
            except (TemporaryError, StateDbError) as exc:
                log_unless_reported(logger, exc, "lease heartbeat failed: %s", exc)
            if self.metrics is not None:
                now = time.monotonic()
                for lim in self.pools.limits.values():
                    self.metrics.on_cooling(lim.provider, lim.name, self.pools.states[lim.key].cooling(now))
                self._sync_key_rejected()
                try:
                    self.metrics.on_queue(await self.queue.counts())
                except (TemporaryError, StateDbError) as exc:
                    logger.debug("queue depth not refreshed: %s", exc)
