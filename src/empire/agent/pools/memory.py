"""In-process twins of the pools' stores: the reference behaviour of each port, without a database.

They pass the same contract suites as the SQL implementations in `empire.state` (`tests/contract/`),
so a test of what the pools decide can run on them with a fake clock. Not for production: nothing
here survives a restart or is shared between replicas.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from empire.agent.pools.budget import BudgetLedger, BudgetLimits, day_start, month_start
from empire.agent.pools.callbacks import callback_payload, callback_result
from empire.agent.pools.holds import Hold, HoldKind, Holds, active_holds
from empire.agent.pools.jobs import ACTIVE_STATES, CLAIMABLE_STATES, FINAL_STATES, Job, JobState, NewJob, Spend
from empire.agent.pools.performance import PerformanceFigure, PlatformTotals, refuse_bad_figures
from empire.agent.pools.publish import NewContent
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
from empire.agent.pools.revenue import PublishedTrack
from empire.agent.types import Reason

__all__ = [
    "MemoryCallbackStore", "MemoryContentCatalog", "MemoryHoldStore", "MemoryJobQueue", "MemoryPerformanceStore",
]  # fmt: skip


class MemoryHoldStore:
    """`HoldStore` in a dict. `audit` lists what the SQL store writes to the `audit` table."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], Hold] = {}
        self.audit: list[dict[str, Any]] = []

    async def set(
        self, kind: HoldKind, subject: str, source: str, held: bool, *, reason: str, actor: str, at: datetime
    ) -> bool:
        key = (kind.value, subject, source)
        row = self._rows.get(key)
        if (row is not None and row.held == held) or (row is None and not held):
            return False
        self._rows[key] = Hold(kind, subject, source, held, reason, actor, at)
        self.audit.append({"at": at, "actor": actor, "action": "pool_hold" if held else "pool_release",
                           "subject": f"{kind.value}/{subject}", "details": {"source": source, "reason": reason}})  # fmt: skip
        return True

    async def release_all(self, kind: HoldKind, subject: str, *, actor: str, at: datetime) -> int:
        keys = [k for k, h in self._rows.items() if k[:2] == (kind.value, subject) and h.held]
        for k in keys:
            self._rows[k] = replace(self._rows[k], held=False, reason=Reason.manual.value, actor=actor, updated_at=at)
        if keys:
            self.audit.append({"at": at, "actor": actor, "action": "pool_release", "subject": f"{kind.value}/{subject}",
                               "details": {"source": "all", "released": len(keys)}})  # fmt: skip
        return len(keys)

    async def get(self, kind: HoldKind, subject: str, source: str) -> Hold | None:
        return self._rows.get((kind.value, subject, source))

    async def list(self, held_only: bool = True) -> list[Hold]:
        return [self._rows[k] for k in sorted(self._rows) if self._rows[k].held or not held_only]

    async def active(self) -> Holds:
        return active_holds(self._rows.values())


class MemoryCallbackStore:
    """`CallbackStore` over a map of the jobs in flight: `in_flight[(provider, provider_job_id)] = job id`
    stands for the job rows the SQL store reads (set it as jobs are submitted; remove them when done)."""

    def __init__(self) -> None:
        self.in_flight: dict[tuple[str, str], int] = {}
        self.results: dict[int, dict[str, Any]] = {}  # job id -> {"callback": ...}, as `jobs.result`
        self.audit: list[dict[str, Any]] = []

    async def record(
        self,
        provider: str,
        job_id: str,
        payload: dict[str, Any],
        *,
        status: str,
        actor: str,
        at: datetime,
        expected: bool,
    ) -> int | None:
        ours = self.in_flight.get((provider, job_id))
        if ours is None and not expected:
            return None
        if ours is not None:
            self.results[ours] = callback_result(job_id, payload, at)
        self.audit.append({
            "at": at, "actor": actor, "action": "provider_callback",
            "subject": f"job/{ours}" if ours is not None else f"provider/{provider}/{job_id[:200]}",
            "details": {"provider": provider, "provider_job_id": job_id[:256], "status": status},
        })  # fmt: skip
        return ours

    async def lookup(self, provider: str, job_id: str) -> dict[str, Any] | None:
        ours = self.in_flight.get((provider, job_id))
        return callback_payload(self.results.get(ours), job_id) if ours is not None else None


class MemoryJobQueue:
    """`JobQueue` in a dict of `Job` values, with the SQL queue's guards and orderings."""

    def __init__(self, limits: BudgetLimits | None = None, *, same_jobs_as: MemoryJobQueue | None = None) -> None:
        """`same_jobs_as`: another replica's queue over the same jobs (as two SQL queues share a table)."""
        self.limits = limits or BudgetLimits()
        self.held_personas: frozenset[str] = frozenset()
        self._jobs: dict[int, Job] = same_jobs_as._jobs if same_jobs_as is not None else {}
        self._ids: dict[str, int] = same_jobs_as._ids if same_jobs_as is not None else {}

    def _set(self, job: Job, **values: Any) -> None:
        self._jobs[job.id] = replace(job, **values)

    def _owned(self, job_id: int, owner: str) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.lease_owner == owner and job.state in ACTIVE_STATES else None

    # -- producing --------------------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[NewJob], now: datetime) -> int:
        new = 0
        for j in jobs:
            if j.idempotency_key in self._ids:
                continue
            job_id = len(self._jobs) + 1
            self._ids[j.idempotency_key] = job_id
            self._jobs[job_id] = Job(
                id=job_id, idempotency_key=j.idempotency_key, persona=j.persona, provider=j.provider, account=None,
                priority=int(j.priority), state=JobState.queued, attempts=0, not_before=j.not_before or now,
                lease_owner=None, lease_expires_at=None, provider_job_id=None, request=dict(j.request), result=None,
                last_error=None, error_class=None, cost=None, created_at=now, updated_at=now,
            )  # fmt: skip
            new += 1
        return new

    # -- claiming ---------------------------------------------------------------------------
    async def claim(self, owner: str, now: datetime, limit: int, lease_seconds: float) -> list[Job]:
        if limit <= 0:
            return []
        expires = now + timedelta(seconds=lease_seconds)
        reclaimed = [j for j in self._jobs.values() if j.state in ACTIVE_STATES and j.lease_expires_at is not None
                     and j.lease_expires_at < now][:limit]  # fmt: skip
        fresh: list[Job] = []
        room = limit - len(reclaimed)
        if room > 0:
            candidates = sorted(
                (j for j in self._jobs.values() if j.state in CLAIMABLE_STATES and j.not_before <= now
                 and (j.persona is None or j.persona not in self.held_personas)),
                key=lambda j: (j.priority, j.not_before, j.id),
            )[: room if not self.limits.active else room * 4]  # fmt: skip
            fresh = within_budget(self.limits, self._spend(now) if self.limits.active else None, candidates, room)
        for j in reclaimed:
            self._set(j, lease_owner=owner, lease_expires_at=expires, updated_at=now)
        for j in fresh:
            self._set(self._jobs[j.id], state=JobState.leased, lease_owner=owner, lease_expires_at=expires,
                      cost=j.cost, updated_at=now)  # fmt: skip
        out = [replace(j, lease_owner=owner, lease_expires_at=expires) for j in reclaimed]
        return out + [replace(j, state=JobState.leased, lease_owner=owner, lease_expires_at=expires) for j in fresh]

    async def reserve_for(self, job_id: int, owner: str, provider: str, now: datetime) -> bool:
        cost = self.limits.estimate(provider)
        job = self._jobs.get(job_id)
        if job is None or job.lease_owner != owner:
            return False
        if self.limits.active:
            ledger = BudgetLedger(self.limits, self._spend(now))
            ledger.reserve(job.provider, -(job.cost or 0.0))  # its own reservation, under its old provider
            if not ledger.fits(provider, cost):
                return False
        self._set(job, provider=provider, cost=cost, updated_at=now)
        return True

    async def heartbeat(self, owner: str, now: datetime, lease_seconds: float) -> int:
        mine = [j for j in self._jobs.values() if j.lease_owner == owner and j.state in ACTIVE_STATES]
        for j in mine:
            self._set(j, lease_expires_at=now + timedelta(seconds=lease_seconds))
        return len(mine)

    # -- transitions --------------------------------------------------------------------------
    async def apply(self, updates: Sequence[Update]) -> None:
        for u in updates:
            if isinstance(u, Released):
                self._release(u)
                continue
            if isinstance(u, Rescheduled) and u.request is not None and u.job_id in self._jobs:
                self._set(self._jobs[u.job_id], request=u.request)  # as the SQL queue: whoever owns it
            job = self._owned(u.job_id, u.owner)
            if job is None:
                continue
            if isinstance(u, Submitting):
                self._set(job, state=JobState.submitting, provider=u.provider, account=u.account, updated_at=u.at)
            elif isinstance(u, OutcomeUnknown):
                self._set(job, state=JobState.unknown_outcome, last_error=u.error[:2000], error_class="unknown_outcome",
                          lease_owner=None, lease_expires_at=None, updated_at=u.at)  # fmt: skip
            elif isinstance(u, Submitted):
                self._set(job, state=JobState.submitted, provider=u.provider, account=u.account,
                          provider_job_id=u.provider_job_id, cost=u.cost, updated_at=u.at)  # fmt: skip
            elif isinstance(u, Succeeded):
                self._set(job, state=JobState.succeeded, result=u.result, cost=u.cost, lease_owner=None,
                          lease_expires_at=None, last_error=None, error_class=None, updated_at=u.at,
                          finished_at=u.at)  # fmt: skip
            elif isinstance(u, Rescheduled):
                self._set(job, state=JobState.failed, attempts=u.attempts, not_before=u.not_before,
                          last_error=u.error[:2000], error_class=u.error_class, lease_owner=None, lease_expires_at=None,
                          provider_job_id=None, account=None, cost=None, updated_at=u.at)  # fmt: skip
            elif isinstance(u, DeadLettered):
                self._set(job, state=JobState.dead, attempts=u.attempts, last_error=u.error[:2000],
                          error_class=u.error_class, lease_owner=None, lease_expires_at=None, cost=None,
                          updated_at=u.at, finished_at=u.at)  # fmt: skip
            elif isinstance(u, Noted):
                self._set(job, last_error=u.error[:2000], error_class=u.error_class, updated_at=u.at)

    def _release(self, u: Released) -> None:
        job = self._jobs.get(u.job_id)
        if job is None or job.lease_owner != u.owner:
            return
        if job.state is JobState.leased:
            self._set(job, state=JobState.queued, lease_owner=None, lease_expires_at=None, cost=None, updated_at=u.at)
        elif job.state in (JobState.submitted, JobState.submitting):  # the next owner resumes or looks it up
            self._set(job, lease_expires_at=u.at)

    # -- operator actions (CLI) -----------------------------------------------------------
    async def cancel(self, job_id: int, now: datetime) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state in FINAL_STATES:
            return False
        self._set(job, state=JobState.cancelled, lease_owner=None, lease_expires_at=None,
                  cost=job.cost if job.state is JobState.submitted else None, updated_at=now, finished_at=now)  # fmt: skip
        return True

    async def retry(self, job_id: int, now: datetime) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state not in (JobState.dead, JobState.cancelled, JobState.failed, JobState.deferred):
            return False
        self._set(job, state=JobState.queued, attempts=0, not_before=now, lease_owner=None, lease_expires_at=None,
                  finished_at=None, updated_at=now)  # fmt: skip
        return True

    async def resolve(self, job_id: int, outcome: str, note: str, now: datetime) -> bool:
        job = self._jobs.get(job_id)
        if job is None or job.state is not JobState.unknown_outcome:
            return False
        if outcome == "done":
            self._set(job, state=JobState.succeeded, result={"resolved": "done", "note": note}, finished_at=now,
                      last_error=None, error_class=None, updated_at=now)  # fmt: skip
        elif outcome == "failed":
            self._set(job, state=JobState.dead, last_error=f"resolved as failed: {note}"[:2000], cost=None,
                      error_class="unknown_outcome", finished_at=now, updated_at=now)  # fmt: skip
        elif outcome == "resubmit":
            self._set(job, state=JobState.queued, not_before=now, provider_job_id=None, cost=None, updated_at=now)
        else:
            raise ValueError(f"outcome {outcome!r} is none of done, failed, resubmit")
        return True

    # -- reading ----------------------------------------------------------------------------
    async def get(self, ref: int | str) -> Job | None:
        return self._jobs.get(ref if isinstance(ref, int) else self._ids.get(ref, -1))

    async def list(
        self, state: str | None = None, persona: str | None = None, limit: int = 50, provider: str | None = None
    ) -> list[Job]:
        rows = [j for j in sorted(self._jobs.values(), key=lambda j: -j.id)
                if (not state or j.state.value == state) and (not persona or j.persona == persona)
                and (not provider or j.provider == provider)]  # fmt: skip
        return rows[:limit]

    async def counts(self) -> dict[tuple[str, int], int]:
        out: dict[tuple[str, int], int] = defaultdict(int)
        for j in self._jobs.values():
            out[(j.state.value, j.priority)] += 1
        return dict(out)

    async def open_jobs(self) -> int:
        return sum(1 for j in self._jobs.values() if j.state in ACTIVE_STATES or (
            j.state in CLAIMABLE_STATES and (j.persona is None or j.persona not in self.held_personas)))  # fmt: skip

    async def in_flight(self) -> dict[tuple[str, str | None], int]:
        out: dict[tuple[str, str | None], int] = defaultdict(int)
        for j in self._jobs.values():
            if j.state in ACTIVE_STATES:
                out[(j.provider, j.account)] += 1
        return dict(out)

    async def done_since(self, since: datetime) -> dict[tuple[str, str | None], tuple[int, float]]:
        out: dict[tuple[str, str | None], tuple[int, float]] = {}
        for j in self._jobs.values():
            if j.state is JobState.succeeded and j.finished_at is not None and j.finished_at >= since:
                n, c = out.get((j.provider, j.account), (0, 0.0))
                out[(j.provider, j.account)] = (n + 1, c + (j.cost or 0.0))
        return out

    async def count_keys(self, keys: Sequence[str]) -> int:
        keys = list(keys)
        return sum(len(set(keys[i : i + 500]) & self._ids.keys()) for i in range(0, len(keys), 500))

    async def count_prefix(self, prefix: str) -> int:
        return sum(1 for k in self._ids if k.startswith(prefix))

    async def planned_since(self, since: datetime) -> dict[str, int]:
        given_up = (JobState.cancelled, JobState.failed, JobState.dead)
        out: dict[str, int] = defaultdict(int)
        for j in self._jobs.values():
            if j.persona and j.idempotency_key.startswith("gen/") and j.created_at >= since and j.state not in given_up:
                out[j.persona] += 1
        return dict(out)

    async def queued_cost(self) -> dict[str, float]:
        n: dict[str, int] = defaultdict(int)
        for j in self._jobs.values():
            if j.state in CLAIMABLE_STATES:
                n[j.provider] += 1
        return {p: k * self.limits.estimate(p) for p, k in n.items()}

    async def spend(self, now: datetime) -> Spend:
        return self._spend(now)

    def _spend(self, now: datetime) -> Spend:
        d0, m0 = day_start(now), month_start(now)
        by_day: dict[str, float] = defaultdict(float)
        by_month: dict[str, float] = defaultdict(float)
        for j in self._jobs.values():
            active = j.state in ACTIVE_STATES
            # billed: succeeded, or cancelled after submission (cancel keeps the cost only then)
            done = j.state is JobState.succeeded or (j.state is JobState.cancelled and j.cost is not None)
            finished = j.finished_at
            if not (active or (done and finished is not None and finished >= m0)):
                continue
            cost = j.cost or 0.0
            by_day[j.provider] += cost if active or (done and finished is not None and finished >= d0) else 0.0
            by_month[j.provider] += cost
        return Spend(sum(by_day.values()), sum(by_month.values()), dict(by_day), dict(by_month))


class MemoryContentCatalog:
    """`ContentCatalog` in a dict of `NewContent` by id."""

    def __init__(self) -> None:
        self.items: dict[str, NewContent] = {}
        self.revenue: dict[str, float] = {}  # revenue to date by id (set by hand: the inventory's side)

    async def add(self, item: NewContent) -> None:
        self.items.setdefault(item.id, item)

    async def recent(self, persona: str, limit: int) -> list[tuple[str | None, dict[str, Any]]]:
        mine = [i for i in self.items.values() if i.meta.persona == persona and i.meta.status == "active"]
        mine.sort(key=lambda i: i.meta.created_at, reverse=True)
        return [(i.meta.title, dict(i.meta.extra)) for i in mine[:limit]]

    async def published_since(self, since: datetime, personas: Sequence[str]) -> list[PublishedTrack]:
        names = set(personas)
        return [
            PublishedTrack(i.meta.persona, str(i.meta.extra.get("genre") or ""), i.meta.extra.get("provider"),
                           i.meta.created_at, self.revenue.get(i.id, 0.0))
            for i in self.items.values()
            if i.meta.persona in names and i.meta.status != "quarantined" and i.meta.created_at >= since
        ]  # fmt: skip


class MemoryPerformanceStore:
    """`PerformanceStore` over a `MemoryContentCatalog` (its objects are the known ids; their revenue
    to date is the catalog's `revenue`). `audit` lists what the SQL store writes to `audit`."""

    def __init__(self, catalog: MemoryContentCatalog) -> None:
        self.catalog = catalog
        self.rows: dict[tuple[str, str, Any], PerformanceFigure] = {}
        self.audit: list[dict[str, Any]] = []

    async def record(self, figures: Sequence[PerformanceFigure], *, actor: str, at: datetime, source: str) -> int:
        from empire.errors import NotFoundError

        if not figures:
            return 0
        refuse_bad_figures(figures, at.date())
        ids = sorted({f.object_id for f in figures})
        missing = [i for i in ids if i not in self.catalog.items]
        if missing:
            raise NotFoundError(
                f"unknown content object(s): {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
            )
        for f in figures:
            self.rows[(f.object_id, f.platform, f.period)] = f
        for oid in ids:
            self.catalog.revenue[oid] = sum(f.revenue for k, f in self.rows.items() if k[0] == oid)
        self.audit.append({"at": at, "actor": actor, "action": "content.performance",
                           "subject": f"object/{ids[0]}" if len(ids) == 1 else f"objects/{len(ids)}",
                           "details": {"source": source, "objects": len(ids), "figures": len(figures)}})  # fmt: skip
        return len(figures)

    async def figures(self, object_id: str) -> list[PerformanceFigure]:
        return sorted((f for k, f in self.rows.items() if k[0] == object_id), key=lambda f: (f.platform, f.period))

    async def revenue(self, object_id: str) -> float:
        return self.catalog.revenue.get(object_id, 0.0)

    async def totals(self, since: datetime) -> dict[tuple[str, str], PlatformTotals]:
        acc: dict[tuple[str, str], list[Any]] = {}
        for (oid, platform, _), f in self.rows.items():
            item = self.catalog.items[oid]
            if item.meta.created_at < since or item.meta.status == "quarantined":
                continue
            a = acc.setdefault((item.meta.persona or "", platform), [0, 0, 0.0, set()])
            a[0] += f.views
            a[1] += f.engagement
            a[2] += f.revenue
            a[3].add(oid)
        return {k: PlatformTotals(a[0], a[1], a[2], len(a[3])) for k, a in sorted(acc.items())}
