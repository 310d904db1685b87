"""`empire db backup` / `restore` against real SQLite and PostgreSQL (pg_dump/pg_restore), and S3 (moto server).

What a user relies on: a backup taken while the daemon writes is one instant (rows written together
are in it together), a restore gives back exactly what the manifest lists, a damaged artifact or a
non-empty database is refused before anything changes, and no restore runs under a live daemon.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from empire.agent.leader import FileLeader
from empire.agent.records import ActionState
from empire.cli import main
from empire.errors import ConfigError, PermanentError
from empire.state import tables as t
from empire.state.backup import MANIFEST_SUFFIX, Manifest, create_backup, database_contents, restore_backup
from empire.state.database import Database

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def second_url(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Another empty database of the same kind as `database_url` (the restore target)."""
    if database_url.startswith("sqlite"):
        return f"sqlite+aiosqlite:///{tmp_path / 'restored' / 'empire.db'}"
    return request.getfixturevalue("new_postgres_url")()


async def write_pairs(db: Database, n: int, tag: str) -> None:
    """`n` transactions, each adding one decision and one audit row: in any consistent snapshot the
    two tables grow together."""
    for i in range(n):
        async with db.begin() as conn:
            await conn.execute(insert(t.decisions).values(at=NOW, target=f"{tag}{i}", reasons=[], details={}))
            await conn.execute(insert(t.audit).values(at=NOW, actor="test", action="pair", subject=f"{tag}{i}",
                                                      details={}))  # fmt: skip


async def counts(url: str) -> tuple[int, int]:
    found = await database_contents(url)
    return found.rows["decisions"], found.rows["audit"]


async def test_a_backup_taken_while_writing_is_one_instant(database: Database, second_url: str, tmp_path: Path):
    url = database.url
    await write_pairs(database, 50, "before")
    manifests: list[Manifest] = []

    async def back_up() -> None:
        await anyio.sleep(0.05)
        manifests.append(await create_backup(url, tmp_path / "b" / "snap", NOW))

    async with anyio.create_task_group() as tg:
        tg.start_soon(write_pairs, database, 400, "during")
        tg.start_soon(back_up)
    (m,) = manifests
    assert m.rows["decisions"] == m.rows["audit"] >= 50
    assert m.revision is not None and m.size == (tmp_path / "b" / "snap").stat().st_size
    assert oct((tmp_path / "b" / "snap").stat().st_mode & 0o777) == "0o600"
    password = make_url(url).password
    assert not password or f":{password}@" not in m.to_json()  # the source is shown masked

    before = await restore_backup(second_url, tmp_path / "b" / "snap", m)
    assert before.empty
    assert await counts(second_url) == (m.rows["decisions"], m.rows["audit"])
    assert (await database_contents(second_url)).rows == m.rows


async def test_a_damaged_artifact_or_a_full_database_is_refused_untouched(database: Database, tmp_path: Path):
    await write_pairs(database, 3, "x")
    art = tmp_path / "snap"
    m = await create_backup(database.url, art, NOW)
    await write_pairs(database, 2, "after")

    with pytest.raises(ConfigError, match=r"not empty \(audit 5, decisions 5\).*--force"):
        await restore_backup(database.url, art, m)
    assert await counts(database.url) == (5, 5)

    data = bytearray(art.read_bytes())
    data[len(data) // 2] ^= 0xFF
    art.write_bytes(bytes(data))
    with pytest.raises(PermanentError, match="does not match its manifest"):
        await restore_backup(database.url, art, m, force=True)
    assert await counts(database.url) == (5, 5)


async def test_force_replaces_with_the_snapshot(database: Database, tmp_path: Path):
    await write_pairs(database, 3, "x")
    m = await create_backup(database.url, tmp_path / "snap", NOW)
    await write_pairs(database, 4, "later")
    before = await restore_backup(database.url, tmp_path / "snap", m, force=True)
    assert before.rows["decisions"] == 7
    assert await counts(database.url) == (3, 3)


async def test_a_backup_of_another_kind_or_a_newer_schema_is_refused(database: Database, tmp_path: Path):
    m = await create_backup(database.url, tmp_path / "snap", NOW)
    other = "postgresql" if m.dialect == "sqlite" else "sqlite"
    with pytest.raises(ConfigError, match=f"is a {other} backup"):
        await restore_backup(database.url, tmp_path / "snap", Manifest(**{**m.__dict__, "dialect": other}))
    newer = Manifest(**{**m.__dict__, "revision": "9999", "empire_version": "9.0"})
    with pytest.raises(ConfigError, match=r"revision '9999'.*empire 9\.0"):
        await restore_backup(database.url, tmp_path / "snap", newer)


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE", "EMPIRE_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def intent_row(data_dir: Path) -> None:
    """An intent left unfinished (as a kill -9 between intent and outcome leaves it)."""
    conn = sqlite3.connect(data_dir / "empire.db")
    conn.execute("INSERT INTO actions (idempotency_key, kind, subject, params, reason, state, created_at, updated_at) "
                 "VALUES ('scale:api:1', 'scale', 'api', '{}', 'above_target', 'intent', '2026-03-01 12:00:00', "
                 "'2026-03-01 12:00:00')")  # fmt: skip
    conn.commit()
    conn.close()


def test_cli_backup_then_restore_into_a_new_data_dir(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "silence", "add", 'alertname="Disk"', "--duration", "2h", "--comment", "maintenance")[0] == 0
    intent_row(data_dir)
    code, out, _ = run(capsys, "db", "backup")
    assert code == 0, out
    assert "1 unfinished intents" in out and "3 rows" in out  # the silence, its audit row, the intent
    (art,) = (data_dir / "backups").glob("empire-*.sqlite3")
    assert (data_dir / "backups" / (art.name + MANIFEST_SUFFIX)).is_file()

    code, _, err = run(capsys, "db", "restore", str(art))  # the source itself is not empty
    assert code == 2 and "not empty (actions 1, audit 1, silences 1)" in err

    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "new"))
    code, out, err = run(capsys, "db", "restore", str(art) + MANIFEST_SUFFIX)
    assert code == 0, err
    assert "ok    rows as in the manifest: 3 in " in out
    assert "1 unfinished journal intent(s): read back (never re-applied)" in out
    assert out.rstrip().endswith("restore: ok")
    code, out, _ = run(capsys, "db", "verify")
    assert code == 0 and "1 unfinished: the next start reads them back, never re-applies them" in out
    code, out, _ = run(capsys, "silence", "list")
    assert code == 0 and "maintenance" in out

    # the next start reads the unfinished intent back and settles it; nothing is executed again
    env = {**os.environ, "EMPIRE_KUBERNETES__MODE": "disabled", "EMPIRE_HTTP__PORT": "0"}
    done = subprocess.run([sys.executable, "-m", "empire", "run", "--once"], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    conn = sqlite3.connect(tmp_path / "new" / "empire.db")
    (row,) = conn.execute("SELECT state, error FROM actions WHERE idempotency_key = 'scale:api:1'").fetchall()
    conn.close()
    assert row == ("reconciled", "reconciled: dry run: nothing was applied")
    code, out, _ = run(capsys, "db", "verify")
    assert code == 0 and "none unfinished" in out


def test_cli_refuses_a_restore_while_a_daemon_holds_the_lock(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    assert run(capsys, "db", "backup", "--to", str(tmp_path / "b" / "one.sqlite3"))[0] == 0
    (data_dir / "empire.db").unlink()
    held = FileLeader(data_dir)
    assert anyio.run(held.ensure)
    try:
        code, _, err = run(capsys, "db", "restore", str(tmp_path / "b" / "one.sqlite3"))
    finally:
        anyio.run(held.release)
    assert code == 2 and "a daemon is running" in err and "stop every replica" in err
    assert not (data_dir / "empire.db").exists()
    assert run(capsys, "db", "restore", str(tmp_path / "b" / "one.sqlite3"))[0] == 0


def test_cli_backup_to_s3_and_restore_from_it(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    from fakes.s3 import moto_server

    with moto_server() as endpoint:
        for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                     "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
            monkeypatch.setenv(k, v)
        boto3.client("s3").create_bucket(Bucket="backups")
        assert run(capsys, "silence", "add", 'alertname="Disk"', "--duration", "2h", "--comment", "s3 trip")[0] == 0
        code, out, err = run(capsys, "db", "backup", "--to", "s3://backups/prod/")
        assert code == 0, err
        url = out.split()[1].rstrip(":")
        assert url.startswith("s3://backups/prod/empire-") and url.endswith(".sqlite3")
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="backups")["Contents"]]
        assert sorted(keys) == sorted([url[len("s3://backups/") :], url[len("s3://backups/") :] + MANIFEST_SUFFIX])

        monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "new"))
        code, out, err = run(capsys, "db", "restore", url)
        assert code == 0, err
        assert "s3 trip" in run(capsys, "silence", "list")[1]


def test_pg_dump_missing_is_said_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    from empire.state import pgtools

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ConfigError, match=r"pg_dump not found .*postgresql-client"):
        pgtools.find_tool("pg_dump", search=())


def test_the_pg_password_is_not_on_the_command_line() -> None:
    from empire.state.pgtools import libpq_env

    env = libpq_env("postgresql+asyncpg://empire:s3cr%40t@db.example:6543/prod?ssl=true")
    assert env["PGPASSWORD"] == "s3cr@t" and env["PGHOST"] == "db.example" and env["PGPORT"] == "6543"
    assert env["PGSSLMODE"] == "require" and env["PGDATABASE"] == "prod"


async def test_unfinished_intents_survive_the_trip(database: Database, second_url: str, tmp_path: Path):
    from empire.agent.records import ActionRecord
    from empire.state.store import SqlStateStore

    store = SqlStateStore(database)
    await store.write_intent(ActionRecord(idempotency_key="scale:api:x", kind="scale", subject="api", params={},
                                          reason="above_target", state=ActionState.intent, created_at=NOW,
                                          updated_at=NOW))  # fmt: skip
    m = await create_backup(database.url, tmp_path / "snap", NOW)
    assert m.unfinished_intents == 1
    await restore_backup(second_url, tmp_path / "snap", m)
    restored = await Database.open(second_url)
    try:
        (left,) = await SqlStateStore(restored).unfinished_actions()
        assert left.idempotency_key == "scale:api:x"
        async with restored.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(t.actions))).scalar_one() == 1
    finally:
        await restored.close()
