"""`SqlCallbackStore`: the pools' `CallbackStore` port on the state DB (SQLite and PostgreSQL).

An accepted provider callback is written on its job's row (`jobs.result`, only while the job is in
flight) and audited in the same transaction, so any replica polling that job finds it
(see `empire.agent.pools.callbacks` for the endpoint and why it is strict).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from empire.agent.pools.callbacks import callback_payload, callback_result
from empire.agent.pools.jobs import JobState
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["IN_FLIGHT", "SqlCallbackStore"]

J = t.jobs
IN_FLIGHT = (JobState.leased.value, JobState.submitted.value)


class SqlCallbackStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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
        async with self.db.begin() as conn:
            q = select(J.c.id, J.c.state).where(J.c.provider == provider, J.c.provider_job_id == job_id,
                                                J.c.state.in_(IN_FLIGHT))  # fmt: skip
            row = (await conn.execute(q)).first()
            if row is None and not expected:
                return None
            if row is not None:
                await conn.execute(update(J).where(J.c.id == row.id, J.c.state.in_(IN_FLIGHT)).values(
                    result=callback_result(job_id, payload, at),
                    updated_at=at,
                ))  # fmt: skip
            await conn.execute(insert(t.audit).values(
                at=at, actor=actor, action="provider_callback",
                subject=f"job/{row.id}" if row is not None else f"provider/{provider}/{job_id[:200]}",
                details={"provider": provider, "provider_job_id": job_id[:256], "status": status},
            ))  # fmt: skip
            return int(row.id) if row is not None else None

    async def lookup(self, provider: str, job_id: str) -> dict[str, Any] | None:
        q = select(J.c.result).where(J.c.provider == provider, J.c.provider_job_id == job_id,
                                     J.c.state.in_(IN_FLIGHT))  # fmt: skip
        async with self.db.connect() as conn:
            row = (await conn.execute(q)).first()
        return callback_payload(row.result, job_id) if row is not None else None
