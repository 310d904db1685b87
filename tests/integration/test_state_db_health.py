"""The daemon when its state database fails under it: deleted, read-only, full (SQLite) and a
PostgreSQL server going away and coming back (the real one from scripts/with-services.sh, behind a
TCP proxy). Each time: `/readyz` fails with the reason, `/status` and `empire_state_db_*` say so,
the demand keeps being decided but the scale-up is *not* executed (the intent could not be
journaled), one log line marks the change, and it acts again by itself once the condition clears
(a deleted file needs a restart: a new file at the path is refused, not silently adopted).

The daemon is the real `build_daemon` on a fake clock against a fake Prometheus and a fake
Kubernetes API over HTTP on 127.0.0.1; full disk is SQLite's `PRAGMA max_page_count` and a
read-only file is `PRAGMA query_only` (the tests run as root, where chmod does not stop writes),
both set on every new connection the way the condition would apply to it.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import event
from sqlalchemy.engine.url import make_url

from empire.agent.clock import FakeClock
from empire.agent.daemon import Daemon, build_daemon
from empire.agent.http import build_app
from empire.agent.records import ActionState
from empire.config.settings import load_settings
from fakes.kubernetes import FakeKubernetes, write_kubeconfig
from fakes.loop import START
from fakes.prometheus import FakePrometheus
from fakes.tcpproxy import TcpProxy

pytestmark = pytest.mark.anyio
QUERY = "sum(queue_gen)"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakePrometheus, FakeKubernetes, Any]]:
    """Prometheus says 100 (2 replicas' worth: nothing to do); `gen` runs 2 replicas."""
    for var in ("EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE",
                "EMPIRE_POLICY_SOURCE", "EMPIRE_DATABASE_URL"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    prom, kube = FakePrometheus(), FakeKubernetes(token="t")
    kube.add("gen", 2, "music")
    prom.series[QUERY] = 100.0
    with prom.serve() as purl, kube.serve() as kurl:
        write_kubeconfig(tmp_path / "kubeconfig", kurl, "t")
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
            "loop": {"interval": "15s"},
            "targets": [{"name": "gen", "workload": {"name": "gen", "namespace": "music"}, "max_replicas": 10,
                         "startup_grace": "0s",
                         "signals": [{"name": "queue", "query": QUERY, "type": "total", "target": 50}]}],
        }))  # fmt: skip
        settings: dict[str, Any] = {
            "data_dir": tmp_path / "data", "prometheus": {"url": purl}, "http": {"port": 0}, "replica_id": "r1",
            "kubernetes": {"mode": "kubeconfig", "kubeconfig": str(tmp_path / "kubeconfig")},
        }  # fmt: skip
        yield prom, kube, settings


class Running:
    def __init__(self, daemon: Daemon, client: httpx.AsyncClient) -> None:
        self.d, self.client = daemon, client

    async def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.d.clock.advance(15)  # type: ignore[attr-defined]
            await self.d.loop.tick()

    def sample(self, name: str, **labels: str) -> float | None:
        return self.d.monitor.registry.get_sample_value(name, labels)

    async def ready(self) -> tuple[int, dict[str, Any]]:
        r = await self.client.get("/readyz")
        return r.status_code, r.json()

    async def status(self) -> dict[str, Any]:
        return (await self.client.get("/status")).json()

    async def actions(self) -> list[tuple[int, ActionState]]:
        return [(a.params["replicas"], a.state) for a in await self.d.store.recent_actions("gen")]


@asynccontextmanager
async def running(tmp_path: Path, settings: dict[str, Any], **over: Any) -> AsyncIterator[Running]:
    d = await build_daemon(load_settings(**{**settings, **over}), tmp_path / "policy.yaml", clock=FakeClock(START))
    transport = httpx.ASGITransport(app=build_app(d.context, d.routes))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await d.loop.start()
            await d.loop.tick()
            yield Running(d, client)
    finally:
        await d.leader.release()
        for close in reversed(d.closers):
            await close()


def on_every_connection(run: Running, pragma: Callable[[Any], str]) -> Callable[[], None]:
    """Apply a PRAGMA to every new SQLite connection of the daemon; returns the undo."""

    def listener(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(pragma(cur))
        cur.close()

    engine = run.d.db.engine.sync_engine
    event.listen(engine, "connect", listener)
    return lambda: event.remove(engine, "connect", listener)


def full_disk(cur: Any) -> str:
    cur.execute("PRAGMA page_count")
    return f"PRAGMA max_page_count={cur.fetchone()[0]}"  # not one page more than it has now


def problems_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


async def assert_down(run: Running, kube: FakeKubernetes, reason: str) -> None:
    """Down with `reason`: not ready, reported, and the scale-up it decides is held."""
    code, body = await run.ready()
    assert code == 503 and body["problems"]["state_db"].startswith(f"state database {reason}: "), body
    status = await run.status()
    assert status["state_db"]["up"] is False and status["state_db"]["reason"] == reason
    assert status["state_db"]["actions_held"] is True
    gen = status["targets"]["gen"]
    assert gen["desired"] == 6 and gen["actions"][0]["status"] == "skipped"  # decided ...
    assert gen["actions"][0]["reason"] == "state_db_down"
    assert kube.replicas("gen", "music") == 2  # ... and not done
    assert run.sample("empire_state_db_up") == 0
    assert run.sample("empire_state_db_failure", reason=reason) == 1
    assert run.sample("empire_state_db_failure", reason="unreachable" if reason != "unreachable" else "missing") == 0
    assert run.sample("empire_actions_total", kind="scale", reason="state_db_down", result="skipped")


async def assert_recovers(run: Running, kube: FakeKubernetes) -> None:
    await run.tick()  # the first clean probe: still held
    assert kube.replicas("gen", "music") == 2 and (await run.ready())[0] == 503
    await run.tick()  # the second: up, and this tick acts
    assert kube.replicas("gen", "music") == 6
    assert (await run.ready()) == (200, {"status": "ready", "leader": True})
    assert run.sample("empire_state_db_up") == 1
    assert (await run.actions())[0] == (6, ActionState.applied)  # journaled like any action


async def test_read_only_database_holds_actions_and_recovers_by_itself(
    tmp_path: Path, world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prom, kube, settings = world
    caplog.set_level(logging.INFO)
    async with running(tmp_path, settings) as run:
        assert await run.ready() == (200, {"status": "ready", "leader": True})
        caplog.clear()
        undo = on_every_connection(run, lambda cur: "PRAGMA query_only=ON")
        prom.series[QUERY] = 300.0  # 6 replicas' worth
        await run.tick(5)
        await assert_down(run, kube, "read_only")
        assert [line.split(":")[0] for line in problems_logged(caplog)] == ["ERROR empire.state.health"]
        undo()
        await assert_recovers(run, kube)
    lines = [r.getMessage() for r in caplog.records if r.name == "empire.state.health"]
    assert len(lines) == 2 and "down (read_only)" in lines[0] and "available again" in lines[1]


async def test_full_disk_holds_actions_and_recovers_by_itself(
    tmp_path: Path, world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prom, kube, settings = world
    async with running(tmp_path, settings) as run:
        caplog.clear()
        undo = on_every_connection(run, full_disk)
        for _ in range(100):  # decisions fill the pages the file has; the next one needs a new page
            await run.tick()
            if not run.d.db.health.up:
                break
        assert run.d.db.health.reason == "disk_full"
        prom.series[QUERY] = 300.0
        await run.tick(10)
        await assert_down(run, kube, "disk_full")
        assert [line.split(":")[0] for line in problems_logged(caplog)] == ["ERROR empire.state.health"]
        undo()
        await assert_recovers(run, kube)


async def test_deleted_database_is_not_recreated_and_a_replacement_is_refused(
    tmp_path: Path, world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    prom, kube, settings = world
    db_file = settings["data_dir"] / "empire.db"
    backup = tmp_path / "backup"
    async with running(tmp_path, settings) as run:
        backup.mkdir()
        for f in settings["data_dir"].glob("empire.db*"):
            shutil.copy(f, backup / f.name)
        caplog.clear()
        for f in settings["data_dir"].glob("empire.db*"):
            f.unlink()
        prom.series[QUERY] = 300.0
        await run.tick(5)
        assert not db_file.exists()  # SQLite did not create an empty one under the running daemon
        await assert_down(run, kube, "missing")
        assert "restart 'empire run'" in (await run.status())["state_db"]["message"]
        assert [line.split(":")[0] for line in problems_logged(caplog)] == ["ERROR empire.state.health"]
        for f in backup.iterdir():  # restored from the backup: another file, with other leases and intents
            shutil.copy(f, settings["data_dir"] / f.name)
        await run.tick(3)
        await assert_down(run, kube, "replaced")
    async with running(tmp_path, settings) as run:  # the runbook: restart on the restored file
        assert kube.replicas("gen", "music") == 6
        assert (await run.ready())[0] == 200


async def test_postgres_going_away_holds_actions_and_recovers_by_itself(
    tmp_path: Path, world: Any, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prom, kube, settings = world
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    port = proxy.start()
    proxied = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    try:
        async with running(tmp_path, settings, database_url=proxied) as run:
            caplog.clear()
            proxy.stop()  # the server is gone: connections cut, new ones refused
            prom.series[QUERY] = 300.0
            await run.tick(3)
            code, body = await run.ready()
            assert code == 503 and body["problems"]["state_db"].startswith("state database unreachable: ")
            assert kube.replicas("gen", "music") == 2
            assert run.sample("empire_state_db_failure", reason="unreachable") == 1
            health_lines = [line for line in problems_logged(caplog) if "empire.state.health" in line]
            assert len(health_lines) == 1
            proxy.start()  # back, on the same address
            await run.tick(3)  # two clean probes; leadership (the advisory lock) is taken again
            assert (await run.ready())[0] == 200 and run.sample("empire_state_db_up") == 1
            assert kube.replicas("gen", "music") == 6
    finally:
        proxy.stop()
