"""The state database from the command line: commands that only read never create or migrate a
database (a missing one is a one-line exit 2 saying to run `empire db upgrade`, and the file they
read is byte-for-byte the same afterwards); `empire db verify` checks integrity, revision, tables
and rows; a corrupt SQLite file stops `empire run --once` with one line naming `empire db verify`
(exit 2, not 0); a refused login and an unknown database are permanent (exit 2)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from empire.cli import main
from empire.state import tables as t
from empire.state.migrations import head_revision

READ_ONLY = (
    ["db", "status"], ["db", "verify"], ["explain", "gen"], ["jobs", "list"], ["jobs", "show", "1"],
    ["content", "show", "x"], ["tiers", "plan"], ["tiers", "status"], ["pools", "status"], ["alerts", "list"],
    ["alerts", "outbox"], ["silence", "list"],
)  # fmt: skip
MAIN = "import sys; from empire.cli import main; sys.exit(main())"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in list(os.environ):
        if var.startswith("EMPIRE_"):
            monkeypatch.delenv(var)
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_a_read_only_command_never_creates_a_database(
    argv: list[str], data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"empire: error: no state database at {data_dir / 'empire.db'}: create it with 'empire db "
                   "upgrade' (or start 'empire run', which creates it)"]  # fmt: skip
    assert not data_dir.exists()


def test_read_only_commands_neither_migrate_nor_change_the_file(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "upgrade", "--revision", "0002"]) == 0
    db = data_dir / "empire.db"
    before = digest(db)
    assert main(["jobs", "list"]) == 2  # reading an older schema would fail on a missing column
    needs = f"is at schema revision 0002, this empire needs {head_revision()}: run 'empire db upgrade'"
    assert needs in capsys.readouterr().err
    assert main(["db", "status"]) == 1  # still behind: nothing migrated it
    assert "revision 0002, behind" in capsys.readouterr().out
    assert digest(db) == before
    assert main(["db", "upgrade"]) == 0
    before = digest(db)
    for argv in READ_ONLY:
        assert main(argv) in (0, 2), argv  # 2: an unknown job, object or target
    assert digest(db) == before


def corrupt(db: Path) -> None:
    """Rows on a few dozen pages, checkpointed into the file, then 8 KiB of its middle overwritten."""
    con = sqlite3.connect(db)
    con.executemany("INSERT INTO audit (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)",
                    [("2026-01-01 00:00:00", "t", "x", f"s{i}", "{}") for i in range(5000)])  # fmt: skip
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    with db.open("r+b") as fh:
        fh.seek(db.stat().st_size // 2)
        fh.write(b"\xee" * 8192)


def test_verify_reports_a_healthy_and_a_corrupt_database(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["db", "verify"]) == 0
    out = capsys.readouterr().out
    for line in ("ok    integrity     PRAGMA integrity_check: ok", f"ok    revision      {head_revision()} (the newest)",
                 f"ok    tables        {len(t.metadata.tables)} tables match the schema", "verify: ok"):  # fmt: skip
        assert line in out, out
    corrupt(data_dir / "empire.db")
    assert main(["db", "verify"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  integrity     PRAGMA integrity_check" in out and "\nverify: FAILED: integrity" in out


def test_run_refuses_a_corrupt_database_with_one_line(data_dir: Path, tmp_path: Path) -> None:
    assert main(["db", "upgrade"]) == 0
    corrupt(data_dir / "empire.db")
    env = {**os.environ, "EMPIRE_KUBERNETES__MODE": "disabled", "EMPIRE_HTTP__PORT": "0"}
    done = subprocess.run([sys.executable, "-c", MAIN, "run", "--once"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr  # it exited 0 with a warning before
    errors = [line for line in done.stderr.splitlines() if line.startswith("empire:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr
    assert errors[0].startswith(f"empire: error: state database {data_dir / 'empire.db'} is corrupt (PRAGMA "
                                "quick_check: ")  # fmt: skip
    assert errors[0].endswith("run 'empire db verify' for the details, then restore it from a backup")


def test_refused_login_and_unknown_database_are_permanent(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rest = postgres_url.split("@", 1)[1]  # the test server trusts every password: an unknown role instead
    for url, reason in ((f"postgresql://nobody:s3cret@{rest}", "refusing the login"),
                        (postgres_url.rsplit("/", 1)[0] + "/no_such_db", "missing")):  # fmt: skip
        monkeypatch.setenv("EMPIRE_DATABASE_URL", url)
        assert main(["db", "upgrade"]) == 2, url
        err = capsys.readouterr().err
        assert reason in err and len(err.strip().splitlines()) == 1 and "s3cret" not in err


def test_verify_on_postgres(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMPIRE_DATABASE_URL", postgres_url)
    assert main(["db", "verify"]) == 1  # an empty database: no empire schema yet
    assert "FAIL  revision        no empire schema" in capsys.readouterr().out
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["db", "verify"]) == 0
    out = capsys.readouterr().out
    assert (
        "data checksums  " in out and f"ok    tables          {len(t.metadata.tables)} tables match the schema" in out
    ), out


def test_a_superscript_job_id_is_a_one_line_error(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the CLI property test: "¹".isdigit() is true but int("¹") raises (a traceback)."""
    assert main(["db", "upgrade"]) == 0
    capsys.readouterr()
    assert main(["jobs", "show", "¹"]) == 2
    assert capsys.readouterr().err == "empire: error: no job '¹'\n"
