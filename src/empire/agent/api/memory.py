"""`MemoryTokenStore`: the in-process twin of `empire.state.tokens.SqlTokenStore` (same contract)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from empire.agent.api.auth import TokenRecord
from empire.errors import ConfigError

__all__ = ["MemoryTokenStore"]


class MemoryTokenStore:
    def __init__(self) -> None:
        self.rows: dict[str, TokenRecord] = {}

    async def add(self, record: TokenRecord) -> None:
        if any(r.name == record.name and r.revoked_at is None for r in self.rows.values()):
            raise ConfigError(f"a token named {record.name!r} exists; revoke it first or choose another name")
        self.rows[record.id] = record

    async def by_id(self, token_id: str) -> TokenRecord | None:
        return self.rows.get(token_id)

    async def list(self, include_revoked: bool = False) -> list[TokenRecord]:
        rows = sorted(self.rows.values(), key=lambda r: (r.created_at, r.name, r.id))
        return [r for r in rows if include_revoked or r.revoked_at is None]

    async def revoke(self, name: str, at: datetime) -> TokenRecord | None:
        for r in self.rows.values():
            if r.name == name and r.revoked_at is None:
                self.rows[r.id] = replace(r, revoked_at=at)
                return self.rows[r.id]
        return None
