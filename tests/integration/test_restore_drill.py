"""The restore drill (README: "Restore drill"), end to end with real daemons.

A daemon runs with generation jobs in the queue (a rate-limited provider, so some are still queued),
content in tiers (moved by the tiering sweep), an alert firing and a silence set. A backup is taken
while it runs; more jobs finish after it. Then the daemon is killed -9 and its database destroyed,
the backup restored, the content checked, and a new daemon started. Afterwards every job has run
exactly once (the provider generated each key once, the queue holds each key once, succeeded),
every content object is readable from exactly one tier with its checksum, and the silence and the
alert (the same episode, not a new one) are back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from sqlalchemy import select, update

from empire.agent.pools.jobs import NewJob
from empire.cli import main
from empire.state import tables as t
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue
from fakes.kubernetes import FakeKubernetes
from fakes.prometheus import FakePrometheus
from fakes.provider import FakeKey, FakeProvider, http_provider_policy
from fakes.server import free_port

pytestmark = pytest.mark.slow
MAIN = "import sys; from empire.cli import main; sys.exit(main())"
JOBS = [f"drill-{i}" for i in range(8)]


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    provider = FakeProvider(keys={"key-drill": FakeKey(rpm=30, burst=1, max_concurrent=1)}, latency=0.2)
    prom, kube = FakePrometheus(), FakeKubernetes(token="t")
    kube.add("api", 3, "web")
    prom.series["p95_latency_api"] = 45.0  # above the rule's 30: the alert fires
    data = tmp_path / "data"
    with provider.serve(), prom.serve() as purl, kube.serve() as kurl:
        purl_provider = provider.url
        (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
            "apiVersion": "v1", "current-context": "t",
            "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": kurl}}], "users": [{"name": "u", "user": {"token": "t"}}],
        }))  # fmt: skip
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
            "loop": {"interval": "1s"},
            "targets": [{"name": "api", "workload": {"name": "api", "namespace": "web"}, "max_replicas": 10,
                         "signals": [{"name": "latency", "query": "p95_latency_api", "type": "total",
                                      "target": 100}]}],
            "providers": [http_provider_policy(purl_provider, "drillsynth", [
                {"name": "only", "env": "DRILL_KEY", "requests_per_minute": 30, "burst": 1, "max_concurrent": 1}])],
            "alerting": {"rules": [{"name": "api-slow", "kind": "threshold", "target": "api", "signal": "latency",
                                    "threshold": 30, "severity": "critical"}]},
            "backup": {"enabled": False},
        }))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
        settings = {"EMPIRE_DATA_DIR": str(data), "EMPIRE_POLICY_FILE": str(tmp_path / "policy.yaml"),
                    "EMPIRE_PROMETHEUS__URL": purl, "EMPIRE_KUBERNETES__MODE": "kubeconfig",
                    "EMPIRE_KUBERNETES__KUBECONFIG": str(tmp_path / "kubeconfig"), "DRILL_KEY": "key-drill"}  # fmt: skip
        for k in [k for k in os.environ if k.startswith(("EMPIRE_", "KUBE"))]:
            monkeypatch.delenv(k)
        for k, v in settings.items():
            monkeypatch.setenv(k, v)  # the CLI, run in this process, sees the same deployment
        yield {"provider": provider, "env": {**env, **settings}, "data": data, "tmp": tmp_path,
               "url": f"sqlite+aiosqlite:///{data / 'empire.db'}"}  # fmt: skip


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def daemon(dep: dict[str, Any]) -> subprocess.Popen[bytes]:
    port = free_port()
    with (dep["tmp"] / "daemon.log").open("ab") as fh:
        return subprocess.Popen([sys.executable, "-c", MAIN, "run"], env={**dep["env"], "EMPIRE_HTTP__PORT": str(port)},
                                stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip


def wait_for(cond: Any, timeout: float, what: str, dep: dict[str, Any]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            log = (dep["tmp"] / "daemon.log").read_text()[-5000:]
            raise AssertionError(f"timed out waiting for {what}\n{log}")
        time.sleep(0.2)  # real daemons in other processes: no fake clock reaches them


def query(dep: dict[str, Any], fn: Any) -> Any:
    async def go() -> Any:
        db = await Database.open(dep["url"])
        try:
            return await fn(db)
        finally:
            await db.close()

    return anyio.run(go)


def job_states(dep: dict[str, Any]) -> dict[str, str]:
    async def fn(db: Database) -> dict[str, str]:
        async with db.connect() as conn:
            rows = (await conn.execute(select(t.jobs.c.idempotency_key, t.jobs.c.state))).all()
        return {k: s for k, s in rows}

    return query(dep, fn)


def firing_alerts(dep: dict[str, Any]) -> dict[str, str]:
    async def fn(db: Database) -> dict[str, str]:
        async with db.connect() as conn:
            rows = (await conn.execute(select(t.alerts.c.rule, t.alerts.c.starts_at)
                                       .where(t.alerts.c.state == "firing"))).all()  # fmt: skip
        return {r: s.isoformat() for r, s in rows}

    return query(dep, fn)


def tiers(dep: dict[str, Any]) -> dict[str, str]:
    async def fn(db: Database) -> dict[str, str]:
        async with db.connect() as conn:
            return dict((await conn.execute(select(t.content_objects.c.id, t.content_objects.c.tier))).all())

    return query(dep, fn)


def test_restore_drill(deployment: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    dep, tmp = deployment, deployment["tmp"]
    # -- before: content in tiers, a silence, jobs in the queue -------------------------------
    for i in range(4):
        (tmp / f"c{i}.wav").write_bytes(os.urandom(3_000_000 + i))  # large enough for a move to pay
        assert cli(capsys, "content", "add", str(tmp / f"c{i}.wav"), "--id", f"c{i}")[0] == 0

    async def age(db: Database) -> None:  # two of them idle for 200 days: the sweep archives them
        then = datetime.now(UTC) - timedelta(days=200)
        async with db.begin() as conn:
            await conn.execute(update(t.content_objects).where(t.content_objects.c.id.in_(["c0", "c1"]))
                               .values(created_at=then, tier_since=then, last_access_at=None))  # fmt: skip
        await SqlJobQueue(db).enqueue([NewJob(k, "drillsynth", {"prompt": f"song {k}"}) for k in JOBS],
                                   datetime.now(UTC))  # fmt: skip

    query(dep, age)
    code, out = cli(capsys, "silence", "add", 'alertname="api-slow"', "--duration", "6h", "--comment", "drill")
    assert code == 0, out

    # -- the daemon runs; a backup is taken while it does -------------------------------------
    first = daemon(dep)
    try:
        wait_for(lambda: "api-slow" in firing_alerts(dep), 120, "the alert to fire", dep)
        wait_for(lambda: tiers(dep).get("c0") == "archive", 120, "the sweep to archive c0", dep)
        wait_for(lambda: list(job_states(dep).values()).count("succeeded") >= 2, 120, "two jobs done", dep)
        code, out = cli(capsys, "db", "backup", "--to", str(tmp / "backups") + "/")
        assert code == 0, out
        at_backup = job_states(dep)
        alert_started = firing_alerts(dep)["api-slow"]
        assert list(at_backup.values()).count("succeeded") < len(JOBS), "the drill needs jobs still in the queue"
        wait_for(lambda: list(job_states(dep).values()).count("succeeded") > list(at_backup.values()).count(
            "succeeded"), 120, "a job to finish after the backup", dep)  # fmt: skip
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()

    # -- disaster: the database is gone --------------------------------------------------------
    for suffix in ("", "-wal", "-shm"):
        (dep["data"] / f"empire.db{suffix}").unlink(missing_ok=True)

    (artifact,) = (tmp / "backups").glob("empire-*.sqlite3")
    code, out = cli(capsys, "db", "restore", str(artifact))
    assert code == 0 and "restore: ok" in out, out
    code, out = cli(capsys, "content", "verify", "--all", "--repair")
    assert code == 0, out

    second = daemon(dep)
    try:
        wait_for(lambda: set(job_states(dep).values()) == {"succeeded"}, 180, "every job to finish", dep)
        time.sleep(2)  # a few more ticks: nothing may run again
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0

    # -- after: every job exactly once, content intact in one tier, silences and alerts back ------
    books = dep["provider"].snapshot(with_keys=True)
    assert books["accepted"] == len(JOBS)  # each key generated once, before and after the restore
    assert sorted(books["keys"]) == sorted(JOBS)
    assert job_states(dep) == dict.fromkeys(JOBS, "succeeded")
    code, out = cli(capsys, "db", "verify")  # the runbook's last check: sound, and every intent settled
    assert code == 0 and "none unfinished" in out, out
    code, out = cli(capsys, "content", "verify", "--all")
    assert code == 0, out
    assert f"{4 + len(JOBS)} checked, {4 + len(JOBS)} intact in exactly one tier" in out
    assert tiers(dep)["c0"] == "archive" and tiers(dep)["c2"] == "hot"
    code, out = cli(capsys, "silence", "list")
    assert code == 0 and "drill" in out
    assert firing_alerts(dep) == {"api-slow": alert_started}  # the same episode, restored
    code, out = cli(capsys, "alerts", "list", "--format", "json")
    assert [a["labels"]["alertname"] for a in json.loads(out)] == ["api-slow"]
