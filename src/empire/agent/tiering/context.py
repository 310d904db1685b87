"""Everything a tiering command needs, opened from settings and the policy file, closed together.

The CLI (`empire content ...`, `empire tiers ...`) and the benchmark use this; the daemon wires
the same parts in `setup.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empire.agent.clock import SystemClock
from empire.agent.ports import Clock
from empire.agent.tiering.backends import build_backend
from empire.agent.tiering.inventory import Inventory
from empire.agent.tiering.mover import Mover
from empire.config.settings import Settings
from empire.policies.storage import StoragePolicy
from empire.state.database import Database
from empire.state.inventory import SqlInventory
from empire.state.moves import SqlMoveJournal

__all__ = ["TieringContext", "open_tiering"]


@dataclass
class TieringContext:
    settings: Settings
    policy: StoragePolicy
    dry_run_policy: bool
    db: Database
    inventory: Inventory
    backend: Any  # StorageBackend
    mover: Mover
    clock: Clock


@asynccontextmanager
async def open_tiering(
    settings: Settings, policy_file: str | Path | None = None, *, readonly: bool = False
) -> AsyncIterator[TieringContext]:
    """`readonly` for the commands that only look (`content show`, `tiers plan|status`): the
    database must exist at the newest schema and the connection refuses writes."""
    from empire.policies.loading import load_policy

    loaded = load_policy(settings.policy_path(policy_file))
    policy = loaded.policy.storage
    url = settings.database_url_value
    db = await (Database.open_readonly(url) if readonly else Database.open(url))
    backend = None
    try:
        backend = build_backend(policy, settings.data_dir)
        clock = SystemClock()
        mover = Mover(SqlMoveJournal(db), backend, policy, clock, actor=f"cli:{settings.replica_id}")
        yield TieringContext(settings, policy, loaded.policy.loop.dry_run, db, SqlInventory(db), backend, mover, clock)
    finally:
        if backend is not None:
            await backend.aclose()
        await db.close()
