"""The state database goes away under a running daemon and comes back: PostgreSQL stopped and started
again (a server of the test's own, `fakes.pgcluster`), a SQLite file locked by another process.

What an operator relies on: the daemon does not die, keeps ticking, writes nothing to the cluster
it could not journal first, and when the database is back it resumes and settles every intent
(read back, never re-applied). Every write is identifiable: the demand rises steadily, so each
scale action writes a replica count never written before, and the test matches the cluster's
writes against the journal.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from sqlalchemy import select

from empire.state import tables as t
from empire.state.database import Database
from fakes.kubernetes import FakeKubernetes
from fakes.pgcluster import PgCluster
from fakes.prometheus import FakePrometheus
from fakes.server import free_port

pytestmark = pytest.mark.slow
MAIN = "import sys; from empire.cli import main; sys.exit(main())"


class Cluster(FakeKubernetes):
    def __init__(self) -> None:
        super().__init__(token="t")
        self.times: list[float] = []
        self.before_patch = lambda name: self.times.append(time.time())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    prom, kube = FakePrometheus(), Cluster()
    kube.add("gen", 10, "music")
    t0 = time.time()
    prom.series["sum(queue_gen)"] = lambda _t: 20 + 2 * (time.time() - t0)  # two more replicas' worth a second
    with prom.serve() as purl, kube.serve() as kurl:
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
            "apiVersion": "v1", "current-context": "t",
            "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": kurl}}], "users": [{"name": "u", "user": {"token": "t"}}],
        }))  # fmt: skip
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
            "loop": {"interval": "1s"},
            "targets": [{"name": "gen", "workload": {"name": "gen", "namespace": "music"}, "max_replicas": 100000,
                         "tolerance": 0,
                         "signals": [{"name": "queue", "query": "sum(queue_gen)", "type": "total", "target": 1}]}],
        }))  # fmt: skip
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
        env.update({"EMPIRE_PROMETHEUS__URL": purl, "EMPIRE_KUBERNETES__MODE": "kubeconfig",
                    "EMPIRE_KUBERNETES__KUBECONFIG": str(tmp_path / "kubeconfig"), "EMPIRE_HTTP__PORT": str(port),
                    "EMPIRE_POLICY_FILE": str(tmp_path / "policy.yaml"), "EMPIRE_DATA_DIR": str(tmp_path / "data"),
                    "EMPIRE_LEADER__RENEW_EVERY": "1"})  # fmt: skip
        yield {"kube": kube, "env": env, "port": port, "log": tmp_path / "daemon.log"}


def start(world: dict[str, Any], **env: str) -> subprocess.Popen[bytes]:
    with world["log"].open("ab") as fh:
        return subprocess.Popen([sys.executable, "-c", MAIN, "run"], env={**world["env"], **env}, stdout=fh,
                                stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(cond: Any, timeout: float, what: str, world: dict[str, Any]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{world['log'].read_text()[-4000:]}")
        time.sleep(0.1)  # a real daemon in another process: no fake clock reaches it


def ticks(world: dict[str, Any]) -> int:
    try:
        return int(httpx.get(f"http://127.0.0.1:{world['port']}/status", timeout=2).json()["ticks"])
    except (httpx.HTTPError, ValueError, KeyError):
        return -1


def journal(url: str) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        db = await Database.open(url)
        try:
            async with db.connect() as conn:
                rows = (await conn.execute(select(t.actions).where(t.actions.c.kind == "scale"))).all()
            return [dict(r._mapping) for r in rows]
        finally:
            await db.close()

    return anyio.run(go)


def check_books(world: dict[str, Any], url: str) -> list[dict[str, Any]]:
    """No write without a journal row, no journal row `applied` without its write, nothing twice."""
    rows = journal(url)
    written = [n for _, n in world["kube"].patches]
    journaled = {int(r["params"]["replicas"]): r for r in rows}
    assert len(written) == len(set(written)), f"a replica count written twice: {written}"
    assert set(written) <= set(journaled), f"writes with no intent: {set(written) - set(journaled)}"
    applied = {n for n, r in journaled.items() if r["state"] == "applied"}
    assert applied <= set(written), f"journaled applied, never written: {applied - set(written)}"
    assert not [n for n in written if journaled[n]["state"] in ("reconciled", "failed")]
    return rows


@pytest.mark.postgres  # the services' PostgreSQL packages; the server is the test's own
def test_postgresql_stopped_and_started_under_the_daemon(world: dict[str, Any]) -> None:
    with PgCluster.running() as pg:
        assert pg is not None, "PostgreSQL binaries not installed (/usr/lib/postgresql/*/bin)"
        proc = start(world, EMPIRE_DATABASE_URL=pg.url)
        try:
            kube = world["kube"]
            wait_for(lambda: len(kube.patches) >= 3, 120, "three writes", world)
            stopped_at = time.time()
            pg.stop("fast")
            before = ticks(world)
            time.sleep(4)  # down for a while: the daemon must keep running and write nothing it cannot journal
            assert proc.poll() is None, world["log"].read_text()[-4000:]
            assert ticks(world) > before  # still ticking
            writes_while_down = [x for x in kube.times if x > stopped_at + 1.0]
            pg.start()
            started_at = time.time()
            wait_for(lambda: sum(1 for x in kube.times if x > started_at) >= 3, 120, "writes after the restart",
                     world)  # fmt: skip
            wait_for(lambda: not [r for r in journal(pg.url) if r["state"] == "intent"], 60, "no intent left", world)
            assert writes_while_down == []  # the in-flight one aside (its intent was written before)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        assert code == 0, world["log"].read_text()[-4000:]
        check_books(world, pg.url)


def test_sqlite_locked_for_a_while_by_another_process(world: dict[str, Any], tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'empire.db'}"
    proc = start(world)
    try:
        kube = world["kube"]
        wait_for(lambda: len(kube.patches) >= 3, 120, "three writes", world)
        conn = sqlite3.connect(tmp_path / "data" / "empire.db", timeout=30, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")  # `sqlite3 empire.db` with a long transaction, a backup tool ...
        locked_at = time.time()
        time.sleep(3)  # a real process holds the lock: wall-clock time is the point here
        conn.execute("COMMIT")
        unlocked_at = time.time()
        conn.close()
        writes_while_locked = [x for x in kube.times if locked_at + 1.0 < x < unlocked_at]
        wait_for(lambda: sum(1 for x in kube.times if x > unlocked_at) >= 3, 120, "writes after the lock", world)
        assert proc.poll() is None
        assert writes_while_locked == []
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, world["log"].read_text()[-4000:]
    rows = check_books(world, url)
    assert not [r for r in rows if r["state"] == "intent"]
