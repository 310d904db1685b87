"""`empire content verify --all / --sample N [--repair]`: every object readable from exactly one tier with
its checksum, as after a restore of the state database (the inventory as it was, the bytes as they are)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from empire.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stored(data_dir: Path, tier: str, oid: str) -> Path:
    (found,) = (data_dir / "tiers" / tier).rglob(oid)
    return found


def test_verify_all_finds_and_repairs_what_a_restore_leaves(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("moved", "twice", "damaged", "fine", "gone"):
        (tmp_path / name).write_bytes(name.encode() * 1000)
        assert run(capsys, "content", "add", str(tmp_path / name), "--id", name)[0] == 0
    code, out, _ = run(capsys, "content", "verify", "--all")
    assert code == 0 and "5 checked, 5 intact in exactly one tier" in out

    hot = stored(data_dir, "hot", "moved")  # moved to archive after the backup the inventory came from
    (data_dir / "tiers" / "archive" / hot.parent.name).mkdir(parents=True)
    shutil.move(hot, data_dir / "tiers" / "archive" / hot.parent.name / "moved")
    twice = stored(data_dir, "hot", "twice")  # a move interrupted after its copy
    (data_dir / "tiers" / "cold" / twice.parent.name).mkdir(parents=True)
    shutil.copy(twice, data_dir / "tiers" / "cold" / twice.parent.name / "twice")
    stored(data_dir, "hot", "damaged").write_bytes(b"bit rot")
    stored(data_dir, "hot", "gone").unlink()

    code, out, _ = run(capsys, "content", "verify", "--all")
    assert code == 1
    assert "moved: moved: intact in archive, recorded in hot" in out
    assert "twice: extra_copy: also in cold (inventory: hot)" in out
    assert "damaged: mismatch: hot: sha256:" in out and "gone: missing: not in hot" in out
    assert "5 checked, 1 intact in exactly one tier" in out and out.rstrip().endswith("FAILED")

    code, out, _ = run(capsys, "content", "verify", "--all", "--repair")
    assert code == 1  # the damaged and the missing one need a person
    assert "moved: moved (repaired)" in out and "twice: extra_copy (repaired)" in out
    assert not list((data_dir / "tiers" / "cold").rglob("twice"))
    code, out, _ = run(capsys, "content", "show", "moved", "--format", "json")
    assert '"tier": "archive"' in out

    code, out, _ = run(capsys, "content", "verify", "--sample", "100")
    assert code == 1 and "5 checked, 3 intact in exactly one tier; 1 mismatch, 1 missing" in out


def test_verify_needs_an_id_or_all(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "db", "upgrade")[0] == 0
    code, _, err = run(capsys, "content", "verify")
    assert code == 2 and "give an object id, or --all, or --sample N" in err
    code, _, err = run(capsys, "content", "verify", "x", "--repair")
    assert code == 2 and "--repair goes with --all or --sample" in err
