"""One contract for every JobQueue: the memory twin, SQLite and PostgreSQL behave alike.

What a user relies on: a job is never leased to two replicas at once, a replica that lost its
lease cannot overwrite the new owner's result, a crashed replica's jobs come back after the lease,
enqueueing is idempotent, priorities are respected, and the claim never reserves past a budget,
even with replicas claiming concurrently.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import anyio
import pytest

from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.jobs import JobPriority, JobState, NewJob
from empire.agent.pools.memory import MemoryJobQueue
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
)
from empire.policies.generation import Budget
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue

pytestmark = pytest.mark.anyio
MakeQueue = Callable[..., JobQueue]  # (limits=None) -> a fresh queue on the parametrized store


@pytest.fixture
def make_queue(state_db: Database | None) -> MakeQueue:
    """Queues over one store: two made in one test see the same jobs (two replicas)."""
    if state_db is None:
        shared = MemoryJobQueue()
        return lambda limits=None: MemoryJobQueue(limits, same_jobs_as=shared)
    return lambda limits=None: SqlJobQueue(state_db, limits)


T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def jobs(n: int, prefix: str = "k", priority: JobPriority = JobPriority.normal, provider: str = "p") -> list[NewJob]:
    return [NewJob(f"{prefix}{i}", provider, {"prompt": f"p{i}"}, "persona", priority) for i in range(n)]


async def test_enqueue_is_idempotent(make_queue: MakeQueue) -> None:
    q = make_queue()
    assert await q.enqueue(jobs(5), T0) == 5
    assert await q.enqueue(jobs(7), T0) == 2  # k0..k4 exist already
    assert sum((await q.counts()).values()) == 7
    assert await q.count_prefix("k") == 7 and await q.count_prefix("k1") == 1


async def test_planned_since_counts_each_personas_live_generation_jobs(make_queue: MakeQueue) -> None:
    q = make_queue()

    def gen(persona: str, n: int) -> NewJob:
        return NewJob(f"gen/{persona}/b/{n}", "p", {}, persona)

    await q.enqueue([gen("luna", 0), gen("luna", 1), gen("grit", 0)], T0 - timedelta(days=8))
    await q.enqueue([gen("luna", 2), gen("luna", 3), NewJob("manual-1", "p", {}, "luna")], T0)
    cancelled = await q.get("gen/luna/b/3")
    assert cancelled is not None and cancelled.id is not None and await q.cancel(cancelled.id, T0)
    # since a week ago: luna's job 2 (3 was given up; "manual-1" is not planned generation)
    assert await q.planned_since(T0 - timedelta(days=7)) == {"luna": 1}
    assert await q.planned_since(T0 - timedelta(days=9)) == {"luna": 3, "grit": 1}


async def test_claim_by_priority_then_age_and_not_before(make_queue: MakeQueue) -> None:
    q = make_queue()
    await q.enqueue(jobs(2, "low", JobPriority.low), T0)
    await q.enqueue(jobs(2, "norm"), T0 + timedelta(seconds=1))
    await q.enqueue([NewJob("later", "p", {}, None, JobPriority.high, T0 + timedelta(hours=1))], T0)
    await q.enqueue(jobs(1, "high", JobPriority.high), T0 + timedelta(seconds=2))
    got = await q.claim("r1", T0 + timedelta(seconds=5), 10, 86400)
    assert [j.idempotency_key for j in got] == ["high0", "norm0", "norm1", "low0", "low1"]
    assert all(j.state is JobState.leased and j.lease_owner == "r1" for j in got)
    assert await q.claim("r2", T0 + timedelta(seconds=5), 10, 60) == []  # all leased; "later" not due
    assert [j.idempotency_key for j in await q.claim("r2", T0 + timedelta(hours=2), 10, 60)] == ["later"]


async def test_concurrent_claims_never_share_a_job(make_queue: MakeQueue) -> None:
    q = make_queue()
    await q.enqueue(jobs(60), T0)
    claimed: dict[str, list[int]] = {}

    async def claimer(owner: str) -> None:
        mine: list[int] = []
        while batch := await q.claim(owner, T0, 7, 60):
            mine += [j.id for j in batch]
        claimed[owner] = mine

    async with anyio.create_task_group() as tg:
        for i in range(4):
            tg.start_soon(claimer, f"r{i}")
    all_ids = [i for ids in claimed.values() for i in ids]
    assert len(all_ids) == 60 and len(set(all_ids)) == 60


async def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_write(make_queue: MakeQueue) -> None:
    q = make_queue()
    await q.enqueue(jobs(2), T0)
    a, b = await q.claim("dead-replica", T0, 2, lease_seconds=30)
    await q.apply([Submitted(b.id, "dead-replica", "p", "acct", "pj-1", 0.5, T0)])
    assert await q.claim("r2", T0 + timedelta(seconds=29), 5, 30) == []  # still leased
    assert await q.heartbeat("dead-replica", T0 + timedelta(seconds=20), 30) == 2  # renewed to +50 s
    assert await q.claim("r2", T0 + timedelta(seconds=45), 5, 30) == []
    back = {j.idempotency_key: j for j in await q.claim("r2", T0 + timedelta(seconds=51), 5, 30)}
    assert back["k0"].state is JobState.leased  # never submitted: resubmit under the same key
    assert back["k1"].state is JobState.submitted and back["k1"].provider_job_id == "pj-1"  # resume polling
    # the old owner wakes up: its writes are ignored, the new owner's stand
    await q.apply([Succeeded(a.id, "dead-replica", {"x": 1}, 1.0, T0 + timedelta(seconds=52))])
    assert (await q.get(a.id)).state is JobState.leased  # type: ignore[union-attr]
    await q.apply([Succeeded(a.id, "r2", {"x": 2}, 1.0, T0 + timedelta(seconds=53))])
    done = await q.get(a.id)
    assert done is not None and done.state is JobState.succeeded and done.result == {"x": 2}
    assert done.lease_owner is None and done.finished_at == T0 + timedelta(seconds=53)


async def test_transitions_reschedule_dead_letter_release(make_queue: MakeQueue) -> None:
    q = make_queue()
    await q.enqueue(jobs(3), T0)
    a, b, c = await q.claim("r", T0, 3, 60)
    later = T0 + timedelta(seconds=10)
    await q.apply([
        Rescheduled(a.id, "r", 1, later, "HTTP 503", "server_error", T0, {**a.request, "key_generation": 1}),
        DeadLettered(b.id, "r", 1, "HTTP 422", "bad_request", T0),
        Released(c.id, "r", T0),
    ])  # fmt: skip
    ra, rb, rc = (await q.get(a.id), await q.get(b.id), await q.get(c.id))
    assert ra and ra.state is JobState.failed and ra.attempts == 1 and ra.not_before == later
    assert ra.submit_key == "k0~1" and ra.error_class == "server_error"
    assert rb and rb.state is JobState.dead and rb.last_error == "HTTP 422" and rb.finished_at == T0
    assert rc and rc.state is JobState.queued and rc.lease_owner is None and rc.attempts == 0
    assert [j.id for j in await q.claim("r", T0 + timedelta(seconds=1), 5, 60)] == [c.id]
    assert [j.id for j in await q.claim("r", later, 5, 60)] == [a.id]


async def test_a_note_says_why_a_job_waits_and_survives_its_release(make_queue: MakeQueue) -> None:
    q = make_queue()
    await q.enqueue(jobs(2), T0)
    a, b = await q.claim("r", T0, 2, 60)
    await q.apply([
        Noted(a.id, "r", "p/x submit: HTTP 401; re-routed", "auth", T0 + timedelta(seconds=1)),
        Noted(b.id, "someone-else", "not mine", "auth", T0),  # a lost lease writes nothing
    ])  # fmt: skip
    ra, rb = await q.get(a.id), await q.get(b.id)
    assert ra and ra.state is JobState.leased and ra.lease_owner == "r" and ra.attempts == 0
    assert ra.last_error == "p/x submit: HTTP 401; re-routed" and ra.error_class == "auth"
    assert rb and rb.last_error is None
    await q.apply([Released(a.id, "r", T0 + timedelta(seconds=2))])
    ra = await q.get(a.id)
    assert ra and ra.state is JobState.queued and ra.last_error == "p/x submit: HTTP 401; re-routed"
    (again,) = await q.claim("r", T0 + timedelta(seconds=3), 1, 60)
    await q.apply([Succeeded(again.id, "r", {}, 1.0, T0 + timedelta(seconds=4))])
    assert (await q.get(a.id)).last_error is None  # type: ignore[union-attr]


async def test_cancel_and_retry(make_queue: MakeQueue) -> None:
    q = make_queue()
    await q.enqueue(jobs(2), T0)
    (a,) = await q.claim("r", T0, 1, 60)
    await q.apply([DeadLettered(a.id, "r", 5, "boom", "server_error", T0)])
    assert not await q.cancel(a.id, T0)  # final already
    assert await q.retry(a.id, T0)
    again = await q.get(a.id)
    assert again and again.state is JobState.queued and again.attempts == 0
    b = await q.get("k1")
    assert b is not None and await q.cancel(b.id, T0) and not await q.retry(9999, T0)
    assert (await q.get(b.id)).state is JobState.cancelled  # type: ignore[union-attr]
    assert [j.state for j in await q.list(state="cancelled")] == [JobState.cancelled]


async def test_a_submitting_job_is_reclaimed_as_such_and_unknown_outcomes_wait_for_a_person(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    await q.enqueue(jobs(4), T0)
    a, b, c, d = await q.claim("r", T0, 4, 60)
    await q.apply([Submitting(x.id, "r", "p", "acct", T0) for x in (a, b, c, d)])
    later = T0 + timedelta(seconds=61)
    reclaimed = await q.claim("s", later, 4, 60)  # the owner died: the next one sees where it stopped
    assert {j.state for j in reclaimed} == {JobState.submitting} and {j.account for j in reclaimed} == {"acct"}
    await q.apply([OutcomeUnknown(x.id, "s", "may have been submitted", later) for x in (a, b, c)])
    assert await q.open_jobs() == 1 and await q.claim("t", later + timedelta(seconds=30), 4, 60) == []  # d: s leases it
    assert await q.resolve(a.id, "done", "found it", later)
    assert await q.resolve(b.id, "failed", "not there", later)
    assert await q.resolve(c.id, "resubmit", "not there", later)
    assert not await q.resolve(d.id, "done", "", later)  # still being submitted: nothing to decide
    assert not await q.resolve(a.id, "failed", "", later)  # decided already
    states = {j.id: j.state for j in await q.list(limit=10)}
    assert states == {a.id: JobState.succeeded, b.id: JobState.dead, c.id: JobState.queued, d.id: JobState.submitting}


async def test_claim_never_reserves_past_the_budget(make_queue: MakeQueue) -> None:
    limits = BudgetLimits(total=Budget(daily=10.0), providers={"p": Budget(daily=8.0)}, cost_estimate={"p": 1.5})
    q = make_queue(limits)
    await q.enqueue(jobs(20), T0)
    got: list[int] = []

    async def claimer(owner: str) -> None:
        while batch := await q.claim(owner, T0, 3, 60):
            got.extend(j.id for j in batch)

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(claimer, f"r{i}")
    assert len(got) == 5  # 5 x 1.5 = 7.5 <= 8 (provider daily); a 6th would pass it
    spend = await q.spend(T0)
    assert spend.day == pytest.approx(7.5) and spend.provider_day("p") == pytest.approx(7.5)
    # a success costs what the account charged; the freed reservation lets one more job in
    await q.apply([Succeeded(got[0], (await q.get(got[0])).lease_owner or "", {}, 0.5, T0)])  # type: ignore[union-attr]
    assert len(await q.claim("r9", T0, 5, 60)) == 1  # 6.5 + 1.5 = 8.0 fits, exactly
    assert await q.claim("r9", T0, 5, 60) == []
    assert (await q.spend(T0)).provider_day("p") <= 8.0


async def test_spend_counts_succeeded_by_day_and_month_plus_in_flight(make_queue: MakeQueue) -> None:
    q = make_queue(BudgetLimits(cost_estimate={"p": 2.0}))
    await q.enqueue(jobs(3), T0)
    a, b, _ = await q.claim("r", T0, 3, 86400)
    now = T0 + timedelta(days=3)  # a finished on May 1 (this month, not today), b today
    await q.apply([Succeeded(a.id, "r", {}, 1.0, T0), Succeeded(b.id, "r", {}, 1.25, now)])
    s = await q.spend(now)
    assert s.day == pytest.approx(1.25 + 2.0) and s.month == pytest.approx(1.0 + 1.25 + 2.0)
    assert await q.in_flight() == {("p", None): 1}
    assert (await q.done_since(now - timedelta(hours=1)))[("p", None)] == (1, 1.25)


async def test_cancelling_a_submitted_job_keeps_its_cost_in_the_budget(make_queue: MakeQueue) -> None:
    """The provider has a submitted job and may bill it: cancelling it must not free budget that
    could then be spent twice. A job cancelled before submission frees its reservation."""
    limits = BudgetLimits(providers={"p": Budget(daily=3.0)}, cost_estimate={"p": 1.5})
    q = make_queue(limits)
    await q.enqueue(jobs(4), T0)
    a, b = await q.claim("r", T0, 5, 60)
    await q.apply([Submitted(a.id, "r", "p", "acct", "pj-1", 1.5, T0)])
    assert await q.cancel(a.id, T0) and await q.cancel(b.id, T0)
    assert (await q.spend(T0)).provider_day("p") == pytest.approx(1.5)  # a may be billed; b was never sent
    assert len(await q.claim("r", T0, 5, 60)) == 1  # 1.5 billed + 1.5 reserved = the 3.0 budget
    assert (await q.spend(T0)).provider_day("p") <= 3.0


async def test_heartbeats_beside_transitions_never_deadlock(make_queue: MakeQueue) -> None:
    """The dispatcher's heartbeat extends every lease of its owner while transitions update some of
    the same jobs row by row, in another order. On PostgreSQL the two once deadlocked (CI): the
    heartbeat now skips rows a transition holds. Both keep working, and no lease is lost."""
    q = make_queue()
    await q.enqueue(jobs(40), T0)
    held = await q.claim("r", T0, 40, 60)
    ids = sorted((j.id for j in held), reverse=True)  # the opposite order to the heartbeat's

    async def beats() -> None:
        for i in range(25):
            await q.heartbeat("r", T0 + timedelta(seconds=i), 60)

    async def notes() -> None:
        for i in range(25):
            await q.apply([Noted(j, "r", f"round {i}", "rerouted", T0 + timedelta(seconds=i)) for j in ids])

    async with anyio.create_task_group() as tg:
        tg.start_soon(beats)
        tg.start_soon(notes)
    assert await q.heartbeat("r", T0 + timedelta(seconds=30), 60) == 40
    assert {(await q.get(j)).last_error for j in ids} == {"round 24"}  # type: ignore[union-attr]
