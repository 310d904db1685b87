"""State DB failures: real SQLite errors and PostgreSQL's SQLSTATEs map onto a closed set of reasons
and the temporary/permanent split (exit 3 vs 2); a malformed PostgreSQL URL is a configuration
error (exit 2) whose message never shows the password; and `StateHealth` goes down at the first
failure with one log line, stays down through repeats, and comes back only after two clean probes
(never for a corrupt or replaced file)."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from empire.cli import main
from empire.errors import ConfigError, DbFailure, PermanentError, StateBroken, StateUnavailable, TemporaryError
from empire.state.database import Database
from empire.state.failures import classify_db_error, diagnose
from empire.state.health import StateHealth


def sqlite_error(tmp_path: Path, setup: str, statement: str) -> sqlite3.Error:
    con = sqlite3.connect(tmp_path / "x.db")
    con.execute("CREATE TABLE IF NOT EXISTS t (a)")
    con.executescript(setup)
    try:
        con.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        con.close()
    raise AssertionError(f"{statement} did not fail")


def test_real_sqlite_failures_get_their_reason(tmp_path: Path) -> None:
    readonly = sqlite_error(tmp_path, "PRAGMA query_only=ON;", "INSERT INTO t VALUES (1)")
    assert diagnose(readonly) == (DbFailure.read_only, False)
    pages = sqlite3.connect(tmp_path / "x.db").execute("PRAGMA page_count").fetchone()[0]
    full = sqlite_error(tmp_path, f"PRAGMA max_page_count={pages};", "INSERT INTO t VALUES (randomblob(100000))")
    assert diagnose(full) == (DbFailure.disk_full, True)
    assert diagnose(sqlite_error(tmp_path, "", "SELECT * FROM jobs")) == (DbFailure.schema, False)
    assert diagnose(sqlite_error(tmp_path, "", "SELEC 1")) is None  # a bug, not the database failing
    (tmp_path / "junk.db").write_bytes(b"\x01" * 8192)
    with pytest.raises(sqlite3.Error) as junk:
        sqlite3.connect(tmp_path / "junk.db").execute("SELECT * FROM sqlite_master")
    assert diagnose(junk.value) == (DbFailure.corrupt, False)


@pytest.mark.parametrize(
    ("error", "reason", "kind"),
    [
        (asyncpg.exceptions.InvalidPasswordError("password authentication failed"), DbFailure.auth, StateBroken),
        (asyncpg.exceptions.InvalidAuthorizationSpecificationError('role "x" does not exist'), DbFailure.auth,
         StateBroken),
        (asyncpg.exceptions.InvalidCatalogNameError('database "nope" does not exist'), DbFailure.missing,
         StateBroken),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), DbFailure.unreachable, StateUnavailable),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), DbFailure.unreachable,
         StateUnavailable),
        (asyncpg.exceptions.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
         DbFailure.read_only, StateUnavailable),
        (asyncpg.exceptions.DiskFullError("could not extend file"), DbFailure.disk_full, StateUnavailable),
        (asyncpg.exceptions.DataCorruptedError("invalid page in block 3"), DbFailure.corrupt, StateBroken),
        (ConnectionRefusedError(111, "Connect call failed"), DbFailure.unreachable, StateUnavailable),
    ],
)  # fmt: skip
def test_postgres_failures_are_classified_by_sqlstate(error: Exception, reason: DbFailure, kind: type) -> None:
    err = classify_db_error(error, "postgresql+asyncpg://empire:s3cret@db:5432/empire")
    assert isinstance(err, kind) and err.reason == reason  # type: ignore[attr-defined]
    assert "s3cret" not in str(err) and "empire:***@db" in str(err)


def test_a_url_option_the_driver_refuses_is_a_config_error() -> None:
    try:
        raise asyncpg.exceptions.ClientConfigurationError("`sslmode` parameter must be one of: disable, ...")
    except Exception as exc:
        assert isinstance(classify_db_error(exc, "postgresql+asyncpg://u@h/d?sslmode=x"), ConfigError)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://app:pa@ss@127.0.0.1:5432/empire",  # '@' in the password, not encoded
        "postgresql+asyncpg://app:secret@-bad-host-/empire",
        "postgresql+asyncpg://app:secret@127.0.0.1:0/empire",
    ],
)
def test_a_malformed_postgres_url_is_a_config_error_that_hides_the_password(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Database(url)
    assert "pa@ss" not in str(info.value) and "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("postgresql://app:pa@ss@127.0.0.1:1/empire", 2),  # was "Name or service not known": exit 3
        ("postgresql://app:secret@127.0.0.1:1/empire?ssl=bogus", 2),  # was "unreachable": exit 3
        ("postgresql://app:secret@127.0.0.1:1/empire?sslmode=require", 2),  # asyncpg's name is `ssl`
        ("postgresql://app:secret@127.0.0.1:0/empire", 2),
        ("postgresql://app:secret@127.0.0.1:1/empire", 3),  # connection refused: try again later
    ],
)
def test_cli_exit_codes_follow_the_classification(
    url: str, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMPIRE_DATABASE_URL", url)
    assert main(["db", "status"]) == code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "secret" not in err and "pa@ss" not in err


# -- StateHealth ---------------------------------------------------------------------------------


class FakeDb:
    def __init__(self) -> None:
        self.health: StateHealth | None = None
        self.failure: Exception | None = None

    def describe(self) -> str:
        return "/data/empire.db"

    async def probe(self) -> None:
        if self.failure is not None:
            assert self.health is not None
            if isinstance(self.failure, StateUnavailable | StateBroken):
                self.health.failed(self.failure)  # as `Database` does for every operation
            raise self.failure


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


def health_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == "empire.state.health"]


@pytest.mark.anyio
async def test_health_goes_down_once_and_recovers_after_two_clean_probes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    db, clock, changes = FakeDb(), Clock(), []
    health = StateHealth(db, clock, on_change=lambda h: changes.append((h.up, h.reason)))  # type: ignore[arg-type]
    full = StateUnavailable("state database /data/empire.db is full", DbFailure.disk_full)
    for _ in range(20):  # every writer meets it, every tick
        health.failed(StateUnavailable("state database /data/empire.db is full", DbFailure.disk_full))
    assert not health.up and health.reason == DbFailure.disk_full and health.failures == 20
    assert health.problem() == "state database disk_full: state database /data/empire.db is full"
    clock.at += timedelta(seconds=15)
    assert await health.check() is False  # one clean probe
    health.failed(full)  # ... but the loop's own insert still fails in the same interval
    assert await health.check() is False  # the first clean probe since that failure
    clock.at += timedelta(seconds=30)
    assert await health.check() is True
    assert changes == [(False, DbFailure.disk_full), (True, None)]
    lines = health_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith("ERROR state database down (disk_full): state database /data/empire.db is full")
    assert lines[1].startswith("INFO state database available again after 45s down (disk_full, 21 failed")


@pytest.mark.anyio
async def test_a_corrupt_or_replaced_file_stays_down_until_a_restart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    db = FakeDb()
    health = StateHealth(db, Clock())  # type: ignore[arg-type]
    health.failed(StateBroken("state database /data/empire.db is corrupt", DbFailure.corrupt))
    health.failed(StateUnavailable("locked", DbFailure.busy))  # does not hide the corruption
    for _ in range(5):
        assert await health.check() is False
    assert health.reason == DbFailure.corrupt and len(health_lines(caplog)) == 1
    assert health.snapshot()["actions_held"] is True


@pytest.mark.anyio
async def test_a_new_reason_while_down_is_one_more_line(caplog: pytest.LogCaptureFixture) -> None:
    db = FakeDb()
    health = StateHealth(db, Clock())  # type: ignore[arg-type]
    health.failed(StateBroken("gone", DbFailure.missing))
    db.failure = StateBroken("another file", DbFailure.replaced)
    assert await health.check() is False
    assert health.reason == DbFailure.replaced and health.error is db.failure
    assert [line.split(":")[0] for line in health_lines(caplog)] == [
        "ERROR state database down (missing)", "ERROR state database still down, now replaced",
    ]  # fmt: skip
    assert isinstance(health.error, PermanentError) and not isinstance(health.error, TemporaryError)
