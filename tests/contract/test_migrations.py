"""The Alembic migrations produce exactly the schema in `empire.state.tables`, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from empire.errors import ConfigError, TemporaryError
from empire.state.database import Database
from empire.state.migrations import alembic_config, head_revision
from empire.state.tables import metadata

pytestmark = pytest.mark.anyio


def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migration branches need merging: {heads}"


async def test_migrated_schema_matches_tables(database: Database) -> None:
    assert await database.current_revision() == head_revision()

    def diff(sync_conn: object) -> list:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": False})
        return compare_metadata(ctx, metadata)

    async with database.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_upgrade_is_repeatable(database: Database) -> None:
    await database.upgrade()
    await database.upgrade()
    assert await database.current_revision() == head_revision()


async def test_unreachable_database_is_temporary_and_masks_password() -> None:
    with pytest.raises(TemporaryError) as info:
        await Database.open("postgresql+asyncpg://empire:s3cret@127.0.0.1:1/empire")
    assert "s3cret" not in str(info.value) and "unreachable" in str(info.value)


async def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        Database("nosuchdriver://x")
