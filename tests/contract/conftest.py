"""The store every contract suite runs on: the in-memory twin, SQLite (a temp file) or PostgreSQL.

A suite's fixture builds its store from `state_db`: None for the twin, else an open `Database`
(closed after the test). PostgreSQL runs only when EMPIRE_TEST_POSTGRES_URL is set (see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from empire.state.database import Database


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def state_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database | None]:
    if request.param == "memory":
        yield None
        return
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    db = await Database.open(url)
    try:
        yield db
    finally:
        await db.close()
