"""Shared fixtures: real databases and services, started by scripts/services.sh (see `make test`).

`database_url` runs a test on SQLite (a temp file) and, when EMPIRE_TEST_POSTGRES_URL is set, on
PostgreSQL too, each PostgreSQL test in a database of its own. Tests needing a service that is not
running are skipped with the variable to set, so `pytest` alone still runs everything else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("EMPIRE_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("EMPIRE_TEST_REDIS_URL")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # A thread of its own: this fixture may be requested from inside a running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (asyncpg URL) for one test."""
    if not POSTGRES_URL:
        pytest.skip("set EMPIRE_TEST_POSTGRES_URL (make test starts PostgreSQL)")
    name = f"t_{uuid.uuid4().hex[:12]}"
    _pg_admin(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empire.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[object]:
    from empire.state import Database

    db = await Database.open(database_url)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def redis_url() -> str:
    if not REDIS_URL:
        pytest.skip("set EMPIRE_TEST_REDIS_URL (make test starts Redis)")
    return REDIS_URL
