"""`empire silence add|list|expire` and `empire alerts list|outbox` end to end on SQLite, and the
dispatcher honouring a silence the CLI wrote (as a separate process would, through the DB)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from empire.agent.alerting.api import routes
from empire.agent.alerting.receivers import build_receivers
from empire.agent.alerting.service import AlertService
from empire.agent.clock import FakeClock
from empire.agent.monitor import Monitor
from empire.agent.types import Alert, Reason
from empire.cli import main
from empire.policies.alerting import AlertingPolicy
from empire.state.alerts import SqlAlertStore
from empire.state.database import Database


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("USER", "alice")
    yield tmp_path


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def alert(name: str) -> Alert:
    labels = {"alertname": name, "target": "generator", "signal": "queue", "severity": "warning"}
    return Alert(
        name, "warning", labels, f"{name} summary", (Reason.anomaly,), 1.0, False, {"summary": f"{name} summary"}
    )


def test_silence_lifecycle_and_the_dispatcher_honours_it(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "silence", "add", 'alertname="queue-anomaly"', "--duration", "2h",
                         "--comment", "queue migration", "--author", "bob")  # fmt: skip
    assert code == 0, err
    sid = out.split()[1]
    assert out.startswith(f'silence {sid} added: alertname="queue-anomaly"') and "(2h) by bob" in out

    code, out, _ = cli(capsys, "silence", "list")
    assert code == 0 and sid[:8] in out and "active" in out and "queue migration" in out
    code, out, _ = cli(capsys, "silence", "list", "--format", "json")
    [listed] = json.loads(out)
    assert listed["id"] == sid and listed["matchers"] == ['alertname="queue-anomaly"'] and listed["createdBy"] == "bob"

    # the daemon side (another process in production): same database, a fresh connection
    now = datetime.now(UTC)
    clock = FakeClock(now)
    policy = AlertingPolicy()  # everything to the built-in dashboard

    async def daemon_pass(*fire: str) -> list[str]:
        db = await Database.open(f"sqlite+aiosqlite:///{data_dir / 'empire.db'}")
        try:
            store = SqlAlertStore(db)
            async with httpx.AsyncClient() as client:
                svc = AlertService(store, policy, build_receivers(policy, client), clock, Monitor(CollectorRegistry()))
                for name in fire:
                    await svc.executor.execute(alert(name))
                clock.advance(31)
                p = await svc.dispatch_once()
                return sorted(a.rule for n in p.notifications for a in n.alerts)
        finally:
            await db.close()

    assert anyio.run(daemon_pass, "queue-anomaly", "api-slow") == ["api-slow"]  # the silenced one is held back

    code, out, _ = cli(capsys, "alerts", "list")
    assert code == 0 and "queue-anomaly" in out and "firing (silenced)" in out and "api-slow" in out

    code, out, _ = cli(capsys, "silence", "expire", sid[:6])
    assert code == 0 and out.startswith(f"silence {sid} expired at")
    code, out, _ = cli(capsys, "silence", "list")
    assert out.startswith("no silences")
    code, out, _ = cli(capsys, "silence", "list", "--all")
    assert "expired" in out and sid[:8] in out
    clock.advance(300)
    assert anyio.run(daemon_pass) == ["queue-anomaly"]  # notified at the group's next flush

    code, out, _ = cli(capsys, "alerts", "outbox", "--state", "all")
    assert code == 0 and out.count("dashboard") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("silence", "add", 'alertname=~".*"', "--comment", "x"), "does not match an empty label"),
        (("silence", "add", "alertname", "--comment", "x"), "invalid matcher"),
        (("silence", "add", 'alertname="x"', "--duration", "soon", "--comment", "x"), "--duration"),
        (("silence", "add", 'alertname="x"', "--until", "2001-01-01T00:00Z", "--comment", "x"), "in the past"),
        (("silence", "add", 'alertname="x"', "--comment", " "), "--comment"),
        (("silence", "expire", "nope"), "no silence with id"),
        # each of these was an OverflowError traceback (issue 13)
        (("silence", "add", 'alertname="x"', "--duration", "1000000000d", "--comment", "x"), "longer than 3650d"),
        (("silence", "add", 'alertname="x"', "--duration", "9" * 23 + "s", "--comment", "x"), "longer than 3650d"),
        (
            ("silence", "add", 'alertname="x"', "--start", "9999-12-31T00:00Z", "-d", "2d", "--comment", "x"),
            "after the year 9999",
        ),
        (("silence", "add", 'alertname="x"', "--until", "9999-12-31T00:00Z", "--comment", "x"), "ten years"),
        (("silence", "add", 'alertname="x"', "--start", "0001-01-01T00:00+01:00", "--comment", "x"), "--start"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(data_dir: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                                          message: str) -> None:  # fmt: skip
    code, _, err = cli(capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_alerts_endpoint(data_dir: Path) -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    async def seed() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{data_dir / 'empire.db'}")
        try:
            store = SqlAlertStore(db)
            await store.fire(alert("queue-anomaly"), now)
            await store.fire(alert("old"), now - timedelta(hours=1))
            await store.resolve(alert("old"), now - timedelta(minutes=30))
            await store.add_silence(['alertname="queue-anomaly"'], now, now + timedelta(hours=1), "bob", "why", now)
        finally:
            await db.close()

    anyio.run(seed)

    async def lifespan_db() -> Database:
        return await Database.open(f"sqlite+aiosqlite:///{data_dir / 'empire.db'}")

    db = anyio.run(lifespan_db)
    try:
        app = Starlette(routes=routes(SqlAlertStore(db), FakeClock(now + timedelta(minutes=1))))
        with TestClient(app) as client:
            body = client.get("/alerts").json()
            assert [a["rule"] for a in body["alerts"]] == ["queue-anomaly"]
            assert body["alerts"][0]["labels"]["target"] == "generator" and body["alerts"][0]["status"] == "firing"
            assert [s["createdBy"] for s in body["silences"]] == ["bob"] and body["outbox"] == {}
            assert [a["rule"] for a in client.get("/alerts?state=resolved").json()["alerts"]] == ["old"]
            assert len(client.get("/alerts?state=all&target=generator").json()["alerts"]) == 2
            assert client.get("/alerts?target=api").json()["alerts"] == []
            assert client.get("/alerts?state=bogus").status_code == 400
    finally:
        anyio.run(db.close)
