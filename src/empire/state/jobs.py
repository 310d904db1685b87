"""`SqlJobQueue`: the pools' `JobQueue` port on the state DB's `jobs` table (SQLite and PostgreSQL).

Claiming is `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (replicas skip each other's rows
instead of queueing on them) and a `BEGIN IMMEDIATE` transaction on SQLite (the database's single
writer lock; `Database` begins every SQLite transaction that way). When a budget is configured,
the claim also checks and reserves spend inside the same transaction, under a PostgreSQL advisory
lock, so replicas claiming at the same time cannot overshoot it together. Every transition is one
guarded UPDATE (`lease_owner = me AND state IN (leased, submitted)`), which makes the table the
job's journal. Writes after the claim are batched (`apply`): one transaction carries many jobs'
transitions, which is what lets one dispatcher keep hundreds of generations moving on SQLite.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, case, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from empire.agent.pools.budget import BudgetLedger, BudgetLimits, day_start, month_start
from empire.agent.pools.jobs import ACTIVE_STATES, CLAIMABLE_STATES, FINAL_STATES, Job, JobState, NewJob, Spend
from empire.agent.pools.queue import (
    DeadLettered,
    Noted,
    OutcomeUnknown,
    Released,
    Rescheduled,
    Submitted,
    Submitting,
    Succeeded,
    Update,
    within_budget,
)
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlJobQueue"]

J = t.jobs
BUDGET_LOCK_ID = 0x656D_6275  # "embu": serialises budget checks across replicas on PostgreSQL
_ACTIVE = [s.value for s in ACTIVE_STATES]
_CLAIMABLE = [s.value for s in CLAIMABLE_STATES]


def _job(row: Any) -> Job:
    m = row._mapping
    return Job(
        id=m["id"], idempotency_key=m["idempotency_key"], persona=m["persona"], provider=m["provider"],
        account=m["account"], priority=m["priority"], state=JobState(m["state"]), attempts=m["attempts"],
        not_before=m["not_before"], lease_owner=m["lease_owner"], lease_expires_at=m["lease_expires_at"],
        provider_job_id=m["provider_job_id"], request=dict(m["request"] or {}),
        result=dict(m["result"]) if m["result"] is not None else None, last_error=m["last_error"],
        error_class=m["error_class"], cost=m["cost"], created_at=m["created_at"], updated_at=m["updated_at"],
        finished_at=m["finished_at"],
    )  # fmt: skip


_OWNED = and_(  # no IN (...): expanding parameters cannot go through executemany
    J.c.id == bindparam("b_id"),
    J.c.lease_owner == bindparam("b_owner"),
    or_(
        J.c.state == JobState.leased.value,
        J.c.state == JobState.submitted.value,
        J.c.state == JobState.submitting.value,
    ),
)
_STMTS: dict[type, Any] = {
    Submitting: update(J).where(_OWNED).values(
        state=JobState.submitting.value, provider=bindparam("b_provider"), account=bindparam("b_account"),
        updated_at=bindparam("b_at"),
    ),
    OutcomeUnknown: update(J).where(_OWNED).values(
        state=JobState.unknown_outcome.value, last_error=bindparam("b_error"), error_class="unknown_outcome",
        lease_owner=None, lease_expires_at=None, updated_at=bindparam("b_at"),
    ),
    Submitted: update(J).where(_OWNED).values(
        state=JobState.submitted.value, provider=bindparam("b_provider"), account=bindparam("b_account"),
        provider_job_id=bindparam("b_pjid"), cost=bindparam("b_cost"), updated_at=bindparam("b_at"),
    ),
    Succeeded: update(J).where(_OWNED).values(
        state=JobState.succeeded.value, result=bindparam("b_result"), cost=bindparam("b_cost"),
        lease_owner=None, lease_expires_at=None, last_error=None, error_class=None,
        updated_at=bindparam("b_at"), finished_at=bindparam("b_at"),
    ),
    Rescheduled: update(J).where(_OWNED).values(
        state=JobState.failed.value, attempts=bindparam("b_attempts"), not_before=bindparam("b_nb"),
        last_error=bindparam("b_error"), error_class=bindparam("b_class"), lease_owner=None,
        lease_expires_at=None, provider_job_id=None, account=None, cost=None, updated_at=bindparam("b_at"),
    ),
    DeadLettered: update(J).where(_OWNED).values(
        state=JobState.dead.value, attempts=bindparam("b_attempts"), last_error=bindparam("b_error"),
        error_class=bindparam("b_class"), lease_owner=None, lease_expires_at=None, cost=None,
        updated_at=bindparam("b_at"), finished_at=bindparam("b_at"),
    ),
    Noted: update(J).where(_OWNED).values(
        last_error=bindparam("b_error"), error_class=bindparam("b_class"), updated_at=bindparam("b_at"),
    ),
}  # fmt: skip


def _params(u: Update) -> dict[str, Any]:
    p: dict[str, Any] = {"b_id": u.job_id, "b_owner": u.owner, "b_at": u.at}
    if isinstance(u, Submitted):
        p.update(b_provider=u.provider, b_account=u.account, b_pjid=u.provider_job_id, b_cost=u.cost)
    elif isinstance(u, Submitting):
        p.update(b_provider=u.provider, b_account=u.account)
    elif isinstance(u, OutcomeUnknown):
        p.update(b_error=u.error[:2000])
    elif isinstance(u, Succeeded):
        p.update(b_result=u.result, b_cost=u.cost)
    elif isinstance(u, Rescheduled):
        p.update(b_attempts=u.attempts, b_nb=u.not_before, b_error=u.error[:2000], b_class=u.error_class)
    elif isinstance(u, DeadLettered):
        p.update(b_attempts=u.attempts, b_error=u.error[:2000], b_class=u.error_class)
    elif isinstance(u, Noted):
        p.update(b_error=u.error[:2000], b_class=u.error_class)
    return p


class SqlJobQueue:
    """`JobQueue` over a `Database` (SQLite or PostgreSQL)."""

    def __init__(self, db: Database, limits: BudgetLimits | None = None) -> None:
        self.db = db
        self.limits = limits or BudgetLimits()
        self.held_personas: frozenset[str] = frozenset()  # paused personas: their queued jobs wait

    # -- producing --------------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> int:
        """Insert jobs; a key that exists already is left alone. Returns how many were new."""
        if not jobs:
            return 0
        rows = [
            {"idempotency_key": j.idempotency_key, "persona": j.persona, "provider": j.provider,
             "priority": int(j.priority), "state": JobState.queued.value, "attempts": 0,
             "not_before": j.not_before or now, "request": j.request, "created_at": now, "updated_at": now}
            for j in jobs
        ]  # fmt: skip
        ins = (pg_insert if self.db.dialect == "postgresql" else sqlite_insert)(J)
        stmt = ins.on_conflict_do_nothing(index_elements=["idempotency_key"])
        keys = [r["idempotency_key"] for r in rows]
        async with self.db.begin() as conn:
            before = await self._count_keys(conn, keys)
            for i in range(0, len(rows), 500):
                await conn.execute(stmt, rows[i : i + 500])
            after = await self._count_keys(conn, keys)
        return after - before

    @staticmethod
    async def _count_keys(conn: Any, keys: list[str]) -> int:
        total = 0
        for i in range(0, len(keys), 500):
            q = select(func.count()).select_from(J).where(J.c.idempotency_key.in_(keys[i : i + 500]))
            total += int((await conn.execute(q)).scalar_one())
        return total

    # -- claiming ---------------------------------------------------------------------------
    async def claim(self, owner: str, now: datetime, limit: int, lease_seconds: float) -> list[Job]:
        """Lease up to `limit` jobs: expired leases first (a crashed replica's work), then queued
        jobs by priority and age. Budget permitting: a job that does not fit stays queued."""
        if limit <= 0:
            return []
        expires = now + timedelta(seconds=lease_seconds)
        pg = self.db.dialect == "postgresql"
        async with self.db.begin() as conn:
            if pg and self.limits.active:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BUDGET_LOCK_ID})
            q_expired = (
                select(J).where(J.c.state.in_(_ACTIVE), J.c.lease_expires_at < now).order_by(J.c.id).limit(limit)
            )
            if pg:
                q_expired = q_expired.with_for_update(skip_locked=True)
            reclaimed = [_job(r) for r in (await conn.execute(q_expired)).all()]
            fresh: list[Job] = []
            room = limit - len(reclaimed)
            if room > 0:
                q = (
                    select(J)
                    .where(J.c.state.in_(_CLAIMABLE), J.c.not_before <= now)
                    .order_by(J.c.priority, J.c.not_before, J.c.id)
                    .limit(room if not self.limits.active else room * 4)
                )
                if self.held_personas:  # a lease that expired (a crash) is taken over above regardless
                    q = q.where(or_(J.c.persona.is_(None), J.c.persona.not_in(sorted(self.held_personas))))
                if pg:
                    q = q.with_for_update(skip_locked=True)
                candidates = [_job(r) for r in (await conn.execute(q)).all()]
                spend = await self._spend(conn, now) if self.limits.active else None
                fresh = within_budget(self.limits, spend, candidates, room)
            if reclaimed:
                await conn.execute(
                    update(J)
                    .where(J.c.id == bindparam("b_id"))
                    .values(lease_owner=owner, lease_expires_at=expires, updated_at=now),
                    [{"b_id": j.id} for j in reclaimed],
                )
            if fresh:
                await conn.execute(
                    update(J).where(J.c.id == bindparam("b_id")).values(
                        state=JobState.leased.value, lease_owner=owner, lease_expires_at=expires,
                        cost=bindparam("b_cost"), updated_at=now,
                    ),
                    [{"b_id": j.id, "b_cost": j.cost} for j in fresh],
                )  # fmt: skip
        out = [replace(j, lease_owner=owner, lease_expires_at=expires) for j in reclaimed]
        out += [replace(j, state=JobState.leased, lease_owner=owner, lease_expires_at=expires) for j in fresh]
        return out

    async def reserve_for(self, job_id: int, owner: str, provider: str, now: datetime) -> bool:
        """Move a leased job's reservation to a fallback provider, if that provider's budget allows."""
        cost = self.limits.estimate(provider)
        async with self.db.begin() as conn:
            if self.db.dialect == "postgresql" and self.limits.active:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": BUDGET_LOCK_ID})
            row = (await conn.execute(select(J).where(J.c.id == job_id, J.c.lease_owner == owner))).first()
            if row is None:
                return False
            job = _job(row)
            if self.limits.active:
                spend = await self._spend(conn, now)
                ledger = BudgetLedger(self.limits, spend)
                # this job's own reservation is in `spend` under its old provider: release it first
                ledger.reserve(job.provider, -(job.cost or 0.0))
                if not ledger.fits(provider, cost):
                    return False
            await conn.execute(update(J).where(J.c.id == job_id).values(provider=provider, cost=cost, updated_at=now))
        return True

    async def heartbeat(self, owner: str, now: datetime, lease_seconds: float) -> int:
        """Extend every lease this owner holds. One statement, whatever the number of jobs.

        On PostgreSQL the rows are chosen with `FOR UPDATE SKIP LOCKED`: a transition (`apply`)
        updating some of them row by row at the same moment would otherwise deadlock with this
        multi-row update, each holding a row the other waits for. A skipped row is one being
        transitioned right now, so its lease needs no extension from this beat.
        """
        mine = (J.c.lease_owner == owner) & J.c.state.in_(_ACTIVE)
        if self.db.dialect == "postgresql":
            mine = J.c.id.in_(select(J.c.id).where(mine).order_by(J.c.id).with_for_update(skip_locked=True))
        async with self.db.begin() as conn:
            res = await conn.execute(
                update(J).where(mine).values(lease_expires_at=now + timedelta(seconds=lease_seconds))
            )
        return int(res.rowcount or 0)

    # -- transitions --------------------------------------------------------------------------
    async def apply(self, updates: Sequence[Update]) -> None:
        """Apply transitions in order, in one transaction (runs of one kind go as one executemany)."""
        if not updates:
            return
        async with self.db.begin() as conn:
            i = 0
            while i < len(updates):
                kind = type(updates[i])
                j = i
                while j < len(updates) and type(updates[j]) is kind:
                    j += 1
                batch = updates[i:j]
                if kind is Released:
                    await self._release(conn, batch)
                elif kind is Rescheduled:
                    await conn.execute(_STMTS[kind], [_params(u) for u in batch])
                    for u in batch:
                        if u.request is not None:  # type: ignore[union-attr]
                            await conn.execute(update(J).where(J.c.id == u.job_id).values(request=u.request))  # type: ignore[union-attr]
                else:
                    await conn.execute(_STMTS[kind], [_params(u) for u in batch])
                i = j

    @staticmethod
    async def _release(conn: Any, batch: Sequence[Update]) -> None:
        for u in batch:
            owned = and_(J.c.id == u.job_id, J.c.lease_owner == u.owner)
            await conn.execute(
                update(J)
                .where(owned, J.c.state == JobState.leased.value)
                .values(
                    state=JobState.queued.value, lease_owner=None, lease_expires_at=None, cost=None, updated_at=u.at
                )
            )
            # a submitted job keeps its provider job id: expire the lease so any replica resumes polling;
            # a submitting one may have reached its provider: the next owner looks it up
            await conn.execute(
                update(J)
                .where(owned, J.c.state.in_([JobState.submitted.value, JobState.submitting.value]))
                .values(lease_expires_at=u.at)
            )

    # -- operator actions (CLI) -----------------------------------------------------------
    async def cancel(self, job_id: int, now: datetime) -> bool:
        """Cancel a job that is not final. A job already *submitted* keeps its cost in the budget:
        the provider has it and may bill it (we do not ask it to stop), so the budget stays safe."""
        final = [s.value for s in FINAL_STATES]
        billable = case((J.c.state == JobState.submitted.value, J.c.cost), else_=None)
        async with self.db.begin() as conn:
            res = await conn.execute(
                update(J).where(J.c.id == job_id, J.c.state.not_in(final)).values(
                    state=JobState.cancelled.value, lease_owner=None, lease_expires_at=None, cost=billable,
                    updated_at=now, finished_at=now,
                )
            )  # fmt: skip
        return bool(res.rowcount)

    async def retry(self, job_id: int, now: datetime) -> bool:
        """Put a dead, cancelled, failed or deferred job back in the queue with fresh attempts."""
        again = [s.value for s in (JobState.dead, JobState.cancelled, JobState.failed, JobState.deferred)]
        async with self.db.begin() as conn:
            res = await conn.execute(
                update(J).where(J.c.id == job_id, J.c.state.in_(again)).values(
                    state=JobState.queued.value, attempts=0, not_before=now, lease_owner=None,
                    lease_expires_at=None, finished_at=None, updated_at=now,
                )
            )  # fmt: skip
        return bool(res.rowcount)

    async def resolve(self, job_id: int, outcome: str, note: str, now: datetime) -> bool:
        values: dict[str, Any] = {"updated_at": now, "lease_owner": None, "lease_expires_at": None}
        if outcome == "done":
            values.update(state=JobState.succeeded.value, result={"resolved": "done", "note": note}, finished_at=now,
                          last_error=None, error_class=None)  # fmt: skip
        elif outcome == "failed":
            values.update(state=JobState.dead.value, last_error=f"resolved as failed: {note}"[:2000],
                          error_class="unknown_outcome", finished_at=now, cost=None)  # fmt: skip
        elif outcome == "resubmit":
            values.update(state=JobState.queued.value, not_before=now, provider_job_id=None, cost=None)
        else:
            raise ValueError(f"outcome {outcome!r} is none of done, failed, resubmit")
        async with self.db.begin() as conn:
            res = await conn.execute(
                update(J).where(J.c.id == job_id, J.c.state == JobState.unknown_outcome.value).values(**values)
            )
        return bool(res.rowcount)

    # -- reading ----------------------------------------------------------------------------
    async def get(self, ref: int | str) -> Job | None:
        cond = J.c.id == ref if isinstance(ref, int) else J.c.idempotency_key == ref
        async with self.db.connect() as conn:
            row = (await conn.execute(select(J).where(cond))).first()
        return _job(row) if row else None

    async def list(
        self, state: str | None = None, persona: str | None = None, limit: int = 50, provider: str | None = None
    ) -> list[Job]:
        q = select(J).order_by(J.c.id.desc()).limit(limit)
        if state:
            q = q.where(J.c.state == state)
        if persona:
            q = q.where(J.c.persona == persona)
        if provider:
            q = q.where(J.c.provider == provider)
        async with self.db.connect() as conn:
            return [_job(r) for r in (await conn.execute(q)).all()]

    async def counts(self) -> dict[tuple[str, int], int]:
        """Jobs per (state, priority)."""
        q = select(J.c.state, J.c.priority, func.count()).group_by(J.c.state, J.c.priority)
        async with self.db.connect() as conn:
            return {(s, int(p)): int(n) for s, p, n in (await conn.execute(q)).all()}

    async def open_jobs(self) -> int:
        """Jobs not final yet (queued, failed, leased, submitted), held personas' queued ones left out."""
        q = select(func.count()).select_from(J).where(J.c.state.in_([*_CLAIMABLE, *_ACTIVE]))
        if self.held_personas:
            q = q.where(or_(J.c.state.in_(_ACTIVE), J.c.persona.is_(None),
                            J.c.persona.not_in(sorted(self.held_personas))))  # fmt: skip
        async with self.db.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def in_flight(self) -> dict[tuple[str, str | None], int]:
        """Jobs leased or submitted per (provider, account)."""
        q = select(J.c.provider, J.c.account, func.count()).where(J.c.state.in_(_ACTIVE))
        q = q.group_by(J.c.provider, J.c.account)
        async with self.db.connect() as conn:
            return {(p, a): int(n) for p, a, n in (await conn.execute(q)).all()}

    async def done_since(self, since: datetime) -> dict[tuple[str, str | None], tuple[int, float]]:
        """Succeeded jobs and their cost per (provider, account) since `since`."""
        q = (
            select(J.c.provider, J.c.account, func.count(), func.sum(func.coalesce(J.c.cost, 0.0)))
            .where(J.c.state == JobState.succeeded.value, J.c.finished_at >= since)
            .group_by(J.c.provider, J.c.account)
        )
        async with self.db.connect() as conn:
            return {(p, a): (int(n), float(c or 0.0)) for p, a, n, c in (await conn.execute(q)).all()}

    async def count_keys(self, keys: Sequence[str]) -> int:
        """How many of these idempotency keys are in the queue (any state)."""
        async with self.db.connect() as conn:
            return await self._count_keys(conn, list(keys))

    async def count_prefix(self, prefix: str) -> int:
        """Jobs whose key starts with `prefix` (what the planner already created in a window)."""
        q = select(func.count()).select_from(J).where(J.c.idempotency_key.startswith(prefix, autoescape=True))
        async with self.db.connect() as conn:
            return int((await conn.execute(q)).scalar_one())

    async def planned_since(self, since: datetime) -> dict[str, int]:
        q = (
            select(J.c.persona, func.count())
            .where(J.c.created_at >= since, J.c.persona.is_not(None), J.c.idempotency_key.startswith("gen/"),
                   J.c.state.not_in([JobState.cancelled.value, JobState.failed.value, JobState.dead.value]))
            .group_by(J.c.persona)
        )  # fmt: skip
        async with self.db.connect() as conn:
            return {str(p): int(n) for p, n in (await conn.execute(q)).all()}

    async def queued_cost(self) -> dict[str, float]:
        """Estimated cost of the jobs waiting per provider (for the planner's projection)."""
        q = select(J.c.provider, func.count()).where(J.c.state.in_(_CLAIMABLE)).group_by(J.c.provider)
        async with self.db.connect() as conn:
            return {p: n * self.limits.estimate(p) for p, n in (await conn.execute(q)).all()}

    async def spend(self, now: datetime) -> Spend:
        async with self.db.connect() as conn:
            return await self._spend(conn, now)

    @staticmethod
    async def _spend(conn: Any, now: datetime) -> Spend:
        d0, m0 = day_start(now), month_start(now)
        active = J.c.state.in_(_ACTIVE)
        # billed: succeeded, or cancelled after submission (cancel keeps the cost only then)
        done = or_(J.c.state == JobState.succeeded.value,
                   and_(J.c.state == JobState.cancelled.value, J.c.cost.is_not(None)))  # fmt: skip
        cost = func.coalesce(J.c.cost, 0.0)
        q = (
            select(
                J.c.provider,
                func.sum(case((or_(active, and_(done, J.c.finished_at >= d0)), cost), else_=0.0)),
                func.sum(case((or_(active, and_(done, J.c.finished_at >= m0)), cost), else_=0.0)),
            )
            .where(or_(active, and_(done, J.c.finished_at >= m0)))
            .group_by(J.c.provider)
        )
        by_day: dict[str, float] = defaultdict(float)
        by_month: dict[str, float] = defaultdict(float)
        for p, d, m in (await conn.execute(q)).all():
            by_day[p] += float(d or 0.0)
            by_month[p] += float(m or 0.0)
        return Spend(sum(by_day.values()), sum(by_month.values()), dict(by_day), dict(by_month))
