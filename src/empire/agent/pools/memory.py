"""In-process twins of the pools' stores: the reference behaviour of each port, without a database.

They pass the same contract suites as the SQL implementations in `empire.state` (`tests/contract/`),
so a test of what the pools decide can run on them with a fake clock. Not for production: nothing
here survives a restart or is shared between replicas.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from empire.agent.pools.holds import Hold, HoldKind, Holds, active_holds
from empire.agent.types import Reason

__all__ = ["MemoryCallbackStore", "MemoryHoldStore"]


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
            self.results[ours] = {"callback": {"job_id": job_id, "payload": payload, "at": at.isoformat()}}
        self.audit.append({
            "at": at, "actor": actor, "action": "provider_callback",
            "subject": f"job/{ours}" if ours is not None else f"provider/{provider}/{job_id[:200]}",
            "details": {"provider": provider, "provider_job_id": job_id[:256], "status": status},
        })  # fmt: skip
        return ours

    async def lookup(self, provider: str, job_id: str) -> dict[str, Any] | None:
        ours = self.in_flight.get((provider, job_id))
        cb = self.results.get(ours, {}).get("callback") if ours is not None else None
        if isinstance(cb, dict) and cb.get("job_id") == job_id and isinstance(cb.get("payload"), dict):
            return dict(cb["payload"])
        return None
