"""Crash-safe moves between tiers: copy -> fsync -> verify -> switch -> delete, journaled in `moves`.

The invariant: at every instant the object's row points at a complete copy with the right
checksum, and after recovery it exists in exactly one tier. Each step is journaled before the
next starts, so a crash (kill -9, power cut) leaves a row whose `step` says what is known:

    step       known at that point                  recovery at start
    planned    row claimed (status moving)          roll back: delete the (partial) target
    copied     target durable, not yet verified     verify; finish if it matches, else roll back
    verified   target matches the checksum          finish: switch the pointer, delete the source
    switched   pointer on the target (one txn)      delete the source (idempotent), mark done
    done / aborted                                  nothing

Target locations are derived from the object id, so the journal row names the exact file or key
to clean up. The pointer switch and the `switched` step are one database transaction; the source
is deleted only after it, so no crash can leave the object unreachable. A source whose bytes no
longer match the inventory checksum (changed or corrupted on disk) aborts the move and
quarantines the object for an operator; a failed copy (disk full, store unreachable) aborts and
leaves the source in place. Moves run with bounded concurrency under a shared bytes/s budget.

Several processes may share one state DB (replicas, `empire tiers apply` beside the daemon), so
each move row carries its owner and a lease (default 5 minutes) renewed at every step and while
bytes flow. Every journal write is a compare-and-set on the owner: a mover that lost its move
stops without touching a file. Recovery takes over only moves whose lease expired, or whose owner
ran on this host and is gone (`owner.owner_is_dead_here`), and claims each by the same
compare-and-set, so two recoveries, or a recovery and a live move, never act on one move. A
rollback never deletes the location the object's row points at.

`fault(point)` is a test hook called at each point in `FAULT_POINTS` (the fault-injection test
SIGKILLs the process there); it is None in production.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import anyio

from empire.agent.ports import Clock, StorageBackend
from empire.agent.tiering.budget import ByteBudget
from empire.agent.tiering.journal import Move, MoveAborted, MoveJournal, MoveLost, Skipped
from empire.agent.tiering.metrics import TieringMetrics
from empire.agent.tiering.owner import owner_is_dead_here, process_owner
from empire.agent.tiering.planner import PlannedMove
from empire.agent.types import Reason
from empire.errors import ConfigError, EmpireError, NotFoundError
from empire.policies.storage import StoragePolicy

__all__ = ["FAULT_POINTS", "MoveResult", "Mover"]

logger = logging.getLogger(__name__)

FAULT_POINTS = ("planned", "copying", "copy_done", "copied", "verified", "switched", "source_deleted", "done")
MoveStatus = Literal["done", "aborted", "skipped", "failed"]


@dataclass(frozen=True)
class MoveResult:
    object_id: str
    from_tier: str
    to_tier: str
    status: MoveStatus
    reason: Reason
    bytes: int = 0
    error: str | None = None
    move_id: int | None = None
    recovered: bool = False


class Mover:
    def __init__(
        self,
        journal: MoveJournal,
        backend: StorageBackend,
        policy: StoragePolicy,
        clock: Clock,
        *,
        metrics: TieringMetrics | None = None,
        budget: ByteBudget | None = None,
        fault: Callable[[str], None] | None = None,
        actor: str = "tiering",
        lease: timedelta = timedelta(minutes=5),
    ) -> None:
        self.journal = journal
        self.backend = backend
        self.policy = policy
        self.clock = clock
        self.metrics = metrics
        self.budget = budget or ByteBudget(policy.max_bytes_per_second, clock)
        self.fault = fault
        self.lease = lease
        self.owner = process_owner()
        self.actor = actor
        self._limiter = anyio.CapacityLimiter(policy.max_concurrent_moves)
        self._active: set[str] = set()

    def _hit(self, point: str) -> None:
        if self.fault is not None:
            self.fault(point)

    # ------------------------------------------------------------------ public
    async def apply(self, planned: Sequence[PlannedMove]) -> list[MoveResult]:
        """Run moves concurrently (at most `max_concurrent_moves`), in the given order of priority."""
        results: list[MoveResult | None] = [None] * len(planned)

        async def one(i: int, p: PlannedMove) -> None:
            results[i] = await self.move(p.object_id, p.to_tier, p.reason, from_tier=p.from_tier)

        async with anyio.create_task_group() as tg:
            for i, p in enumerate(planned):
                tg.start_soon(one, i, p)
        return [r for r in results if r is not None]

    async def move(
        self, object_id: str, to_tier: str, reason: Reason = Reason.manual, *, from_tier: str | None = None
    ) -> MoveResult:
        """Move one object; never raises for a move that could not be done (see the result's status).

        At most `max_concurrent_moves` run at once. A started move is shielded from cancellation:
        stopping half-way would only leave work for recovery."""
        async with self._limiter:
            with anyio.CancelScope(shield=True):
                return await self._move(object_id, to_tier, reason, from_tier)

    def set_policy(self, policy: StoragePolicy) -> None:
        """Follow a reloaded policy (concurrency, bytes/s budget)."""
        self.policy = policy
        self._limiter.total_tokens = policy.max_concurrent_moves
        self.budget.rate = self.budget.burst = float(policy.max_bytes_per_second)

    async def _move(self, object_id: str, to_tier: str, reason: Reason, from_tier: str | None) -> MoveResult:
        if to_tier not in self.backend.tier_names:
            raise ConfigError(f"unknown tier {to_tier!r} (valid: {', '.join(self.backend.tier_names)})")
        claimed = await self._claim(object_id, to_tier, reason, from_tier)
        if isinstance(claimed, MoveResult):
            self._count(claimed)
            return claimed
        self._active.add(object_id)
        try:
            self._hit("planned")
            try:
                result = await self._run(claimed)
            except MoveLost:  # raised by any journal write once another process owns the move
                result = self._lost(claimed)
        finally:
            self._active.discard(object_id)
        self._count(result)
        return result

    async def recover(self) -> list[MoveResult]:
        """Finish or roll back every unfinished move whose owner is gone (see the module docstring).
        A move another live process runs is left alone. Safe to repeat, and to run concurrently."""
        results = []
        now = self.clock.now()
        for move, step, owner, lease in await self._unfinished():
            if move.object_id in self._active:
                continue  # running in this process
            # ours but not running: a recovery or rollback of ours that the store interrupted
            if not (owner == self.owner or lease is None or lease <= now or owner_is_dead_here(owner)):
                logger.info("move %s of %s is leased by %s until %s (it may be running): not recovered yet",
                            move.id, move.object_id, owner, lease.isoformat())  # fmt: skip
                continue
            if not await self._take_over(move, step, owner):
                continue  # another recovery got there first, or the move went on
            logger.warning("recovering move %s of %s interrupted at step %s", move.id, move.object_id, step)
            self._active.add(move.object_id)
            try:
                result = await self._resume(move, step)
            except MoveLost:  # a third process took it over meanwhile: its business now
                result = self._lost(move)
            except EmpireError as exc:  # store unreachable: leave it for the next recovery
                logger.warning("move %s of %s not recovered yet: %s", move.id, move.object_id, exc)
                continue
            finally:
                self._active.discard(move.object_id)
            result = MoveResult(**{**result.__dict__, "recovered": True})
            self._count(result)
            results.append(result)
        if self.metrics is not None:
            self.metrics.unfinished_moves.set(len(await self._unfinished()))
        return results

    # ------------------------------------------------------------------ the steps
    async def _run(self, move: Move) -> MoveResult:
        first = True
        renewed = self.clock.now()

        async def progress(n: int) -> None:
            nonlocal first, renewed
            await self.budget.acquire(n)
            if self.clock.now() - renewed > self.lease / 3:  # a long copy keeps its lease
                renewed = self.clock.now()
                await self._step(move, None)
            if self.metrics is not None:
                self.metrics.bytes_moved.labels(move.from_tier, move.to_tier).inc(n)
            if first:
                first = False
                self._hit("copying")

        try:
            try:
                await self.backend.copy(move.from_tier, move.src, move.to_tier, move.dst, progress)
            except NotFoundError as exc:
                raise MoveAborted(f"source missing in tier {move.from_tier}: {exc}", quarantine=True) from exc
            except EmpireError as exc:
                raise MoveAborted(f"copy to {move.to_tier} failed: {exc}") from exc
            self._hit("copy_done")
            await self._step(move, "copied")
            self._hit("copied")
        except MoveAborted as abort:
            return await self._abort_or_leave(move, str(abort), quarantine=abort.quarantine)
        return await self._resume(move, "copied")

    def _lost(self, move: Move) -> MoveResult:
        msg = "taken over by another process's recovery; this process stopped and touched nothing more"
        logger.warning("move %s of %s: %s", move.id, move.object_id, msg)
        return MoveResult(move.object_id, move.from_tier, move.to_tier, "failed", move.reason, error=msg,
                          move_id=move.id)  # fmt: skip

    async def _abort_or_leave(self, move: Move, error: str, *, quarantine: bool) -> MoveResult:
        try:
            return await self._abort(move, error, quarantine=quarantine)
        except EmpireError as exc:  # the target could not be cleaned up: recovery finishes the rollback
            logger.warning("move %s of %s left for recovery: %s", move.id, move.object_id, exc)
            return MoveResult(move.object_id, move.from_tier, move.to_tier, "failed", move.reason,
                              error=f"{error}; rollback pending: {exc}", move_id=move.id)  # fmt: skip

    async def _resume(self, move: Move, step: str) -> MoveResult:
        """Carry a move forward from a journaled step (the normal path and recovery share this)."""
        try:
            if step == "planned":
                raise MoveAborted("interrupted before the copy was complete: rolled back")
            if step == "copied":
                await self._verify(move)
                await self._step(move, "verified")
                self._hit("verified")
                step = "verified"
            if step == "verified":
                await self._switch(move)
                self._hit("switched")
        except MoveAborted as abort:
            return await self._abort_or_leave(move, str(abort), quarantine=abort.quarantine)
        return await self._finish(move)  # switched: from here on only forward

    async def _finish(self, move: Move) -> MoveResult:
        try:
            await self.backend.delete(move.from_tier, move.src)
        except EmpireError as exc:
            logger.warning("move %s of %s: source not deleted yet: %s", move.id, move.object_id, exc)
            return MoveResult(move.object_id, move.from_tier, move.to_tier, "done", move.reason, move.size,
                              error=f"source not deleted yet ({exc}); the next recovery retries", move_id=move.id)  # fmt: skip
        self._hit("source_deleted")
        await self._step(move, "done")
        self._hit("done")
        logger.info("moved %s %s -> %s (%s, %d bytes)", move.object_id, move.from_tier, move.to_tier,
                    move.reason.value, move.size)  # fmt: skip
        return MoveResult(move.object_id, move.from_tier, move.to_tier, "done", move.reason, move.size,
                          move_id=move.id)  # fmt: skip

    async def _verify(self, move: Move) -> None:
        try:
            copy_sum = await self.backend.checksum(move.to_tier, move.dst)
        except NotFoundError as exc:
            raise MoveAborted(f"copy missing in tier {move.to_tier}") from exc
        except EmpireError as exc:
            raise MoveAborted(f"could not verify the copy: {exc}") from exc
        if copy_sum == move.checksum:
            return
        try:
            src_sum = await self.backend.checksum(move.from_tier, move.src)
        except NotFoundError:
            src_sum = "missing"
        except EmpireError as exc:
            raise MoveAborted(f"copy does not match the inventory checksum; source unreadable: {exc}") from exc
        if src_sum != move.checksum:
            raise MoveAborted(
                f"source changed or corrupted before the move: inventory checksum {move.checksum}, "
                f"source now {src_sum}; object quarantined",
                quarantine=True,
            )
        raise MoveAborted(f"copy in {move.to_tier} does not match the source ({copy_sum} != {move.checksum})")

    # ------------------------------------------------------------------ journal
    def _lease_until(self, now: datetime) -> datetime:
        return now + self.lease

    async def _claim(self, object_id: str, to_tier: str, reason: Reason, from_tier: str | None) -> Move | MoveResult:
        now = self.clock.now()
        claimed = await self.journal.claim(
            object_id, to_tier, reason, from_tier, dst=self.backend.location_for(object_id),
            tiers=self.backend.tier_names, owner=self.owner, now=now, lease_until=self._lease_until(now),
        )  # fmt: skip
        if isinstance(claimed, Skipped):
            return MoveResult(object_id, claimed.tier, to_tier, "skipped", reason, error=claimed.why)
        return claimed

    async def _step(self, move: Move, step: str | None) -> None:
        """Journal `step` (None: only renew the lease)."""
        now = self.clock.now()
        await self.journal.renew(move, self.owner, now, self._lease_until(now), **({"step": step} if step else {}))

    async def _switch(self, move: Move) -> None:
        now = self.clock.now()
        await self.journal.switch(move, self.owner, now, self._lease_until(now))

    async def _abort(self, move: Move, error: str, *, quarantine: bool = False) -> MoveResult:
        """Delete the target, put the object back to active (or quarantined) at its source.

        Only while this process owns the move (the lease just renewed covers the delete), and never
        the location the object's row points at: that copy may be the only one."""
        now = self.clock.now()
        if await self.journal.pointer(move, self.owner, now, self._lease_until(now)) == (move.to_tier, move.dst):
            logger.error("move %s of %s: the object's row points at the target; not deleting it", move.id,
                         move.object_id)  # fmt: skip
        else:
            await self.backend.delete(move.to_tier, move.dst)
        now = self.clock.now()
        await self.journal.aborted(move, self.owner, now, self._lease_until(now), error=error, quarantine=quarantine,
                                   actor=self.actor)  # fmt: skip
        log = logger.error if quarantine else logger.warning
        log("move %s of %s %s -> %s aborted: %s", move.id, move.object_id, move.from_tier, move.to_tier, error)
        return MoveResult(move.object_id, move.from_tier, move.to_tier, "aborted", move.reason, error=error,
                          move_id=move.id)  # fmt: skip

    async def _take_over(self, move: Move, step: str, owner: str | None) -> bool:
        """Claim an orphaned move: a compare-and-set on its owner and step, so one claimant wins."""
        now = self.clock.now()
        return await self.journal.take_over(move, step, owner, self.owner, now, self._lease_until(now))

    async def _unfinished(self) -> list[tuple[Move, str, str | None, datetime | None]]:
        return [(u.move, u.step, u.owner, u.lease_expires_at) for u in await self.journal.unfinished()]

    def _count(self, result: MoveResult) -> None:
        if self.metrics is not None:
            self.metrics.moves.labels(result.status, result.reason.value).inc()
