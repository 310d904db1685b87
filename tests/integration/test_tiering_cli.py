"""`empire content ...` and `empire tiers ...` end to end on an embedded SQLite data dir."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select, update

from empire.cli import main
from empire.state import tables as t
from empire.state.database import Database


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def age(data_dir: Path, days: float, *ids: str) -> None:
    """Pretend objects were created (and last played) `days` ago."""

    async def go() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{data_dir / 'empire.db'}")
        then = datetime.now(UTC) - timedelta(days=days)
        async with db.begin() as conn:
            await conn.execute(update(t.content_objects).where(t.content_objects.c.id.in_(ids))
                               .values(created_at=then, tier_since=then, last_access_at=None))  # fmt: skip
        await db.close()

    anyio.run(go)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_plan_apply_status(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, size in (("old.wav", 3_000_000), ("new.wav", 2_000_000), ("tiny.wav", 1000)):
        (tmp_path / name).write_bytes(b"\x01" * size)
        code, out, _ = run(capsys, "content", "add", str(tmp_path / name), "--id", name.split(".")[0])
        assert code == 0 and "in hot" in out
    age(data_dir, 200, "old", "tiny")

    code, out, _ = run(capsys, "tiers", "plan")
    assert code == 0
    assert "1 objects (2.9 MiB) should move" in out
    assert "old" in out and "hot -> archive" in out and "idle_demotion" in out and "tiny" not in out.split("why")[1]

    code, out, _ = run(capsys, "tiers", "plan", "--format", "json")
    plan = json.loads(out)
    assert [(m["id"], m["to"], m["reason"]) for m in plan["moves"]] == [("old", "archive", "idle_demotion")]
    assert plan["total"]["monthly_saving"] == pytest.approx(3_000_000 / 1024**3 * (0.023 - 0.00099))

    code, out, _ = run(capsys, "tiers", "apply", "--dry-run")
    assert code == 0 and "old: hot -> archive skipped" in out
    code, out, _ = run(capsys, "tiers", "apply")
    assert code == 0 and "old: hot -> archive applied" in out
    assert (data_dir / "tiers" / "archive").rglob("old").__next__().stat().st_size == 3_000_000

    code, out, _ = run(capsys, "tiers", "status", "--format", "json")
    tiers = {r["tier"]: r for r in json.loads(out)["tiers"]}
    assert (tiers["hot"]["objects"], tiers["archive"]["objects"], tiers["archive"]["bytes"]) == (2, 1, 3_000_000)
    assert tiers["archive"]["cost_per_month"] == pytest.approx(3_000_000 / 1024**3 * 0.00099)
    code, out, _ = run(capsys, "tiers", "status")
    assert "archive" in out and "total" in out

    async def journal() -> list[tuple[str, str]]:
        db = await Database.open(f"sqlite+aiosqlite:///{data_dir / 'empire.db'}")
        async with db.connect() as conn:
            rows = (await conn.execute(select(t.actions.c.kind, t.actions.c.state))).all()
        await db.close()
        return sorted((r.kind, r.state) for r in rows)

    assert anyio.run(journal) == [("retier", "applied"), ("retier", "skipped")]


def test_import_touch_show_and_bad_input(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.wav").write_bytes(b"a" * 500_000)
    assert run(capsys, "content", "add", str(tmp_path / "a.wav"), "--id", "track-a")[0] == 0
    csv = tmp_path / "plays.csv"
    csv.write_text("id,revenue,accesses,at\ntrack-a,12.5,3,2026-05-01T10:00:00Z\n")
    code, out, _ = run(capsys, "content", "import", str(csv))
    assert code == 0 and "3 accesses for 1 objects, revenue for 1 objects" in out
    code, out, _ = run(capsys, "content", "touch", "track-a", "--count", "2")
    assert code == 0 and "2 access(es) recorded" in out
    code, out, _ = run(capsys, "content", "show", "track-a", "--format", "json")
    shown = json.loads(out)
    assert (shown["revenue"], shown["tier"], shown["rules_want"]) == (12.5, "hot", "hot")

    for body, message in (
        ("id,revenue\nnope,1\n", "unknown content object(s): nope; nothing imported"),
        ("name,revenue\nx,1\n", "needs an 'id' column"),
        ("id,revenue\ntrack-a,lots\n", "plays.csv:2: revenue must be a number"),
        ("id,accesses,at\ntrack-a,1,yesterday\n", "plays.csv:2: invalid time"),
        ("id,plays\ntrack-a,1\n", "unknown columns plays"),
    ):
        csv.write_text(body)
        code, _, err = run(capsys, "content", "import", str(csv))
        assert code == 2 and message in err, err
    assert json.loads(run(capsys, "content", "show", "track-a", "--format", "json")[1])["revenue"] == 12.5
    code, _, err = run(capsys, "content", "touch", "nope")
    assert code == 2 and "unknown content object(s): nope" in err


def test_import_checks_values_as_the_http_endpoint_does(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An access dated 2999 was imported (the HTTP API refuses more than 5 minutes ahead), after
    which `content show` died in math.exp; 1.7e308 added twice stored inf; /dev/zero never ended."""
    (tmp_path / "a.wav").write_bytes(b"a" * 500_000)
    assert run(capsys, "content", "add", str(tmp_path / "a.wav"), "--id", "track-a")[0] == 0
    csv = tmp_path / "plays.csv"
    for body, message in (
        (
            "id,accesses,at\ntrack-a,1,2999-01-01T00:00:00Z\n",
            "plays.csv:2: at: 2999-01-01T00:00:00+00:00 is in the future",
        ),
        (
            "id,accesses,at\ntrack-a,1,0001-01-01T00:00:00Z\n",
            "plays.csv:2: at: 0001-01-01T00:00:00+00:00 is before 1970",
        ),
        ("id,accesses\ntrack-a,99999999999999999999999\n", "plays.csv:2: accesses: must be 1..1,000,000"),
        ("id,revenue\ntrack-a,1e999\n", "plays.csv:2: revenue: must be a finite number"),
        ("id,revenue\ntrack-a,1.7e308\n", "plays.csv:2: revenue: must be a finite number of at most 1,000,000,000,000"),
    ):
        csv.write_text(body)
        code, _, err = run(capsys, "content", "import", str(csv))
        assert (code, err.count("\n")) == (2, 1) and message in err, err
    csv.write_text("id,revenue\ntrack-a,900000000000\ntrack-a,900000000000\n")
    code, _, err = run(capsys, "content", "import", str(csv), "--revenue-mode", "add")
    assert code == 2 and "revenue of track-a would reach 1.8e+12" in err
    code, _, err = run(capsys, "content", "touch", "track-a", "--at", "2999-01-01T00:00:00Z")
    assert code == 2 and "--at: at: 2999-01-01T00:00:00+00:00 is in the future" in err
    code, _, err = run(capsys, "content", "import", "/dev/zero")
    assert code == 2 and "/dev/zero: line 1 is longer than 1,048,576 characters" in err
    csv.write_bytes(b"\xef\xbb\xbfid,accesses\ntrack-a,2\n")  # a spreadsheet's byte-order mark
    assert run(capsys, "content", "import", str(csv))[0] == 0
    code, out, _ = run(capsys, "content", "show", "track-a", "--format", "json")
    assert code == 0 and json.loads(out)["revenue"] == 0.0 and json.loads(out)["accesses_per_day"] > 0


def test_verify_releases_or_accepts_and_add_refuses_duplicates(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.wav").write_bytes(b"a" * 300_000)
    assert run(capsys, "content", "add", str(tmp_path / "a.wav"), "--id", "track-a")[0] == 0
    code, _, err = run(capsys, "content", "add", str(tmp_path / "a.wav"), "--id", "track-a")
    assert code == 2 and "exists already" in err
    code, out, _ = run(capsys, "content", "verify", "track-a")
    assert code == 0 and "intact in hot" in out
    stored = next((data_dir / "tiers" / "hot").rglob("track-a"))
    stored.write_bytes(b"b" * 300_000)  # re-rendered behind the inventory's back
    code, out, _ = run(capsys, "content", "verify", "track-a")
    assert code == 1 and "MISMATCH" in out
    code, out, _ = run(capsys, "content", "verify", "track-a", "--accept-current")
    assert code == 0 and "accepted" in out
    assert run(capsys, "content", "verify", "track-a")[0] == 0


def test_a_tier_root_on_another_tiers_default_directory_is_refused(tmp_path) -> None:
    """The policy alone cannot see `<data dir>/tiers/<name>`; the backend can."""
    from empire.agent.tiering.backends import tier_roots
    from empire.errors import ConfigError
    from empire.policies.storage import StoragePolicy

    policy = StoragePolicy.model_validate({"tiers": [
        {"name": "hot", "cost_per_gb_month": 0.023},
        {"name": "cold", "cost_per_gb_month": 0.004, "root": str(tmp_path / "tiers" / "hot"),
         "enter_when": {"idle_days": 30}},
    ]})  # fmt: skip
    with pytest.raises(ConfigError, match=r"tier 'cold' root .* the root .* of tier 'hot'"):
        tier_roots(policy, tmp_path)
    fine = StoragePolicy.model_validate({"tiers": [{"name": "hot", "cost_per_gb_month": 0.023},
                                                   {"name": "cold", "cost_per_gb_month": 0.004,
                                                    "enter_when": {"idle_days": 30}}]})  # fmt: skip
    assert set(tier_roots(fine, tmp_path)) == {"hot", "cold"}
