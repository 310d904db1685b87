"""Shared fixtures: real databases and services, started by scripts/services.sh (see `make test`).

`database_url` runs a test on SQLite (a temp file) and, when EMPIRE_TEST_POSTGRES_URL is set, on
PostgreSQL too, each PostgreSQL test in a database of its own. Tests needing a service that is not
running are skipped with the variable to set, so `pytest` alone still runs everything else.

Every such test goes through `require_service(name)`: the fixtures below call it, and so does a
hook for tests marked `@pytest.mark.<service>` (postgres, redis, prometheus, alertmanager). With
EMPIRE_TEST_REQUIRE_SERVICES=1 (as .ci/run sets) a missing service FAILS those tests instead:
otherwise an apt-get that could not install PostgreSQL would turn CI green without ever running
the PostgreSQL suites.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("EMPIRE_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("EMPIRE_TEST_REDIS_URL")

# service name (also its pytest marker) -> the variables scripts/services.sh exports for it
SERVICES: dict[str, tuple[str, ...]] = {
    "postgres": ("EMPIRE_TEST_POSTGRES_URL",),
    "redis": ("EMPIRE_TEST_REDIS_URL",),
    "prometheus": ("EMPIRE_TEST_PROMETHEUS_URL", "EMPIRE_TEST_EXPORTER_PORT"),
    "alertmanager": ("EMPIRE_TEST_ALERTMANAGER_URL",),
    "chromium": ("EMPIRE_TEST_CHROMIUM",),  # a headless browser for the status page (Debian's chromium)
}


def services_required() -> bool:
    return os.environ.get("EMPIRE_TEST_REQUIRE_SERVICES", "").strip().lower() in ("1", "true", "yes")


def require_service(name: str) -> str:
    """The first variable's value for service `name` (a URL); when a variable is unset, skip the
    test, or fail it when EMPIRE_TEST_REQUIRE_SERVICES=1."""
    missing = [var for var in SERVICES[name] if not os.environ.get(var)]
    if missing:
        unset = " and ".join(missing)
        if services_required():
            pytest.fail(
                f"EMPIRE_TEST_REQUIRE_SERVICES=1 but {unset} {'is' if len(missing) == 1 else 'are'} unset: "
                f"{name} did not start "
                "(see the 'services:' lines before the test run; scripts/services.sh installs and starts it)",
                pytrace=False,
            )
        pytest.skip(f"set {unset} (make test starts {name})")
    return os.environ[SERVICES[name][0]]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.prometheus` (or postgres, redis, alertmanager) means: needs that service.
    Checked before any fixture is set up, module-scoped ones included."""
    for name in SERVICES:
        if item.get_closest_marker(name) is not None:
            require_service(name)


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
def new_postgres_url() -> Iterator[Callable[[], str]]:
    """Make fresh, empty PostgreSQL databases (asyncpg URLs), as many as a test needs (a restore
    target beside the source); all dropped after the test."""
    require_service("postgres")
    assert POSTGRES_URL
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        _pg_admin(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{base}/{name}"

    try:
        yield make
    finally:
        for name in made:
            _drop_database(name)


@pytest.fixture
def postgres_url(new_postgres_url: Callable[[], str]) -> str:
    """A fresh, empty PostgreSQL database (asyncpg URL) for one test."""
    return new_postgres_url()


def _drop_database(name: str) -> None:
    """Drop a test database, ending its connections. An autovacuum worker on it belongs to no role
    we are a member of, so FORCE may be refused for a moment (scripts/services.sh grants
    pg_signal_backend against that); it finishes on its own: retry briefly, then leave the
    throw-away database to the throw-away cluster rather than fail a test that passed."""
    import asyncpg

    for attempt in range(10):
        try:
            _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except asyncpg.PostgresError:
            time.sleep(0.2 * (attempt + 1))  # a real server process: no fake clock for that
    warnings.warn(f"test database {name} could not be dropped; left to the test cluster", stacklevel=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'empire.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[object]:
    from empire.state.database import Database

    db = await Database.open(database_url)
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
def redis_url() -> str:
    return require_service("redis")
