"""`SqlTokenStore`: the API's named tokens in the state database (`api_tokens`), as digests.

The `TokenStore` port (`empire.agent.api.auth`) over SQL; `MemoryTokenStore` is its twin and
tests/contract/test_token_store.py holds both to the same behaviour. A name belongs to one token
that is not revoked at a time; revoking keeps the row (when, and that it existed, is history).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update

from empire.agent.api.auth import Scope, TokenRecord
from empire.errors import ConfigError
from empire.state import tables as t
from empire.state.database import Database

__all__ = ["SqlTokenStore"]

T = t.api_tokens


def _record(row: Any) -> TokenRecord:
    return TokenRecord(
        id=row.id, name=row.name, scopes=tuple(Scope(s) for s in row.scopes), digest=row.digest,
        created_at=row.created_at, created_by=row.created_by, expires_at=row.expires_at, revoked_at=row.revoked_at,
    )  # fmt: skip


class SqlTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, record: TokenRecord) -> None:
        async with self.db.begin() as conn:
            taken = (
                await conn.execute(select(T.c.id).where(T.c.name == record.name, T.c.revoked_at.is_(None)))
            ).first()
            if taken is not None:
                raise ConfigError(f"a token named {record.name!r} exists; revoke it first or choose another name")
            await conn.execute(insert(T).values(
                id=record.id, name=record.name, scopes=[s.value for s in record.scopes], digest=record.digest,
                created_at=record.created_at, created_by=record.created_by, expires_at=record.expires_at,
                revoked_at=record.revoked_at,
            ))  # fmt: skip

    async def by_id(self, token_id: str) -> TokenRecord | None:
        async with self.db.connect() as conn:
            row = (await conn.execute(select(T).where(T.c.id == token_id))).first()
        return _record(row) if row is not None else None

    async def list(self, include_revoked: bool = False) -> list[TokenRecord]:
        q = select(T).order_by(T.c.created_at, T.c.name, T.c.id)
        if not include_revoked:
            q = q.where(T.c.revoked_at.is_(None))
        async with self.db.connect() as conn:
            return [_record(r) for r in (await conn.execute(q)).all()]

    async def revoke(self, name: str, at: datetime) -> TokenRecord | None:
        async with self.db.begin() as conn:
            row = (await conn.execute(select(T).where(T.c.name == name, T.c.revoked_at.is_(None)))).first()
            if row is None:
                return None
            await conn.execute(update(T).where(T.c.id == row.id).values(revoked_at=at))
        return replace(_record(row), revoked_at=at)
