"""Leader failover: kill -9 the acting replica, again and again. How long until another replica acts,
and was any action lost or applied twice? One JSON line.

Two `empire run` processes (replicas a and b) share the state DB and compete for the leadership:
- `--leader postgres` (default): a PostgreSQL state DB (EMPIRE_TEST_POSTGRES_URL, as
  scripts/with-services.sh starts it; a fresh database is created) -> advisory lock;
- `--leader redis`: one SQLite file and EMPIRE_TEST_REDIS_URL -> a Redis lease (15 s by default).
Both talk to a fake Kubernetes API and a fake Prometheus on 127.0.0.1 (tests/fakes). The one
target's demand rises steadily, so the leader scales up at every tick (the default 15 s interval
unless `--interval`), each time to a replica count never written before: every write to the
cluster is identifiable, and so is its journal row (`params.replicas`).

Each round waits until the leader has written twice, then SIGKILLs it: every other round while its
PATCH is in flight (intent journaled, the API server applying the write after the client died:
the case where a new leader must read back rather than guess), the others at a random moment.
Then it measures the seconds from the kill to the new leader's first write (`seconds`) and starts
the killed replica again as a standby. Finally both replicas are stopped and the journal is
checked against every write the cluster received:
- lost: intents never settled (still `intent` after the surviving leader's reconciliation), plus
  actions journaled `applied` that the cluster never received;
- applied_twice: replica counts the cluster received more than once, plus writes with no journal
  row, plus writes the journal settled as not applied (`reconciled`/`failed`);
- p95_seconds / max_seconds / median_seconds over the rounds. Target: p95 <= 30 s with the default
  lease, 0 lost, 0 applied twice.

    scripts/with-services.sh .venv/bin/python benchmarks/failover.py [--leader postgres|redis]
        [--rounds 10] [--interval 15s] [--patch-delay 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402
import yaml  # noqa: E402

from fakes.kubernetes import FakeKubernetes  # noqa: E402
from fakes.prometheus import FakePrometheus  # noqa: E402
from fakes.server import free_port  # noqa: E402

MAIN = "import sys; from empire.cli import main; sys.exit(main())"


class Cluster(FakeKubernetes):
    """The fake API server, timing each PATCH it receives (`received`) and each write it applied."""

    def __init__(self, delay: float) -> None:
        super().__init__(token="t")
        self.delay = delay
        self.received: list[float] = []
        self.in_flight = threading.Event()
        self.before_patch = self._hook

    def _hook(self, name: str) -> None:
        self.received.append(time.time())
        self.in_flight.set()
        time.sleep(self.delay)  # the API server is slow: a kill can land between request and write
        self.in_flight.clear()


def _policy(path: Path, interval: str) -> None:
    path.write_text(yaml.safe_dump({
        "loop": {"interval": interval},
        "targets": [{"name": "gen", "workload": {"name": "gen", "namespace": "music"}, "min_replicas": 1,
                     "max_replicas": 100000, "tolerance": 0,
                     "signals": [{"name": "queue", "query": "sum(queue_gen)", "type": "total", "target": 1}]}],
        "backup": {"enabled": False},
    }))  # fmt: skip


def _pg_database(base: str) -> str:
    import asyncpg

    name = f"failover_{uuid.uuid4().hex[:8]}"

    async def go() -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(go())
    return base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


class Replica:
    def __init__(self, name: str, work: Path, env: dict[str, str]) -> None:
        self.name, self.work, self.env = name, work, env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
        env.update(self.env, EMPIRE_REPLICA_ID=self.name, EMPIRE_HTTP__PORT=str(self.port),
                   EMPIRE_DATA_DIR=str(self.work / f"data-{self.name}"), PYTHONPATH=str(ROOT / "src"))  # fmt: skip
        log = (self.work / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen([sys.executable, "-c", MAIN, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)

    def status(self) -> dict[str, Any] | None:
        try:
            return dict(httpx.get(f"http://127.0.0.1:{self.port}/status", timeout=2).json())
        except (httpx.HTTPError, ValueError):
            return None

    def leading(self) -> bool:
        return bool((self.status() or {}).get("leader"))

    def standing_by(self) -> bool:
        """Up, ticking, and not the leader: ready to take over."""
        s = self.status()
        return s is not None and not s.get("leader") and int(s.get("ticks") or 0) > 0

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"failover benchmark: timed out waiting for {what}")
        time.sleep(0.05)


def _journal(url: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from empire.state import tables as t
    from empire.state.database import Database

    async def go() -> list[dict[str, Any]]:
        db = await Database.open(url)
        try:
            async with db.connect() as conn:
                rows = (await conn.execute(select(t.actions).where(t.actions.c.kind == "scale"))).all()
            return [dict(r._mapping) for r in rows]
        finally:
            await db.close()

    return asyncio.run(go())


def run(leader: str, rounds: int, interval: str, delay: float) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="empire-failover-"))
    if leader == "postgres":
        base = os.environ.get("EMPIRE_TEST_POSTGRES_URL")
        if not base:
            raise SystemExit("set EMPIRE_TEST_POSTGRES_URL (scripts/with-services.sh starts PostgreSQL)")
        url = _pg_database(base)
        env = {"EMPIRE_DATABASE_URL": url}
    else:
        redis = os.environ.get("EMPIRE_TEST_REDIS_URL")
        if not redis:
            raise SystemExit("set EMPIRE_TEST_REDIS_URL (scripts/with-services.sh starts Redis)")
        url = f"sqlite+aiosqlite:///{work / 'empire.db'}"
        env = {"EMPIRE_DATABASE_URL": url, "EMPIRE_REDIS_URL": redis}
    prom, kube = FakePrometheus(), Cluster(delay)
    kube.add("gen", 10, "music")
    t0 = time.time()
    prom.series["sum(queue_gen)"] = lambda t: 20 + (time.time() - t0)  # +1 replica's worth per second
    _policy(work / "policy.yaml", interval)
    seconds: list[float] = []
    mid_patch = 0
    with prom.serve() as purl, kube.serve() as kurl:
        (work / "kubeconfig").write_text(yaml.safe_dump({
            "apiVersion": "v1", "current-context": "t",
            "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
            "clusters": [{"name": "c", "cluster": {"server": kurl}}], "users": [{"name": "u", "user": {"token": "t"}}],
        }))  # fmt: skip
        env.update(EMPIRE_PROMETHEUS__URL=purl, EMPIRE_KUBERNETES__MODE="kubeconfig",
                   EMPIRE_KUBERNETES__KUBECONFIG=str(work / "kubeconfig"), EMPIRE_POLICY_FILE=str(work / "policy.yaml"))  # fmt: skip
        replicas = {n: Replica(n, work, env) for n in ("a", "b")}
        for r in replicas.values():
            r.start()
        try:
            for i in range(rounds):
                _wait(lambda: any(r.leading() for r in replicas.values()), 180, "a leader")
                head = next(r for r in replicas.values() if r.leading())
                standby = next(r for r in replicas.values() if r is not head)
                _wait(standby.standing_by, 180, "the standby to be up")  # a failover, not a cold start
                writes = len(kube.received)
                _wait(lambda w=writes: len(kube.received) >= w + 2, 180, "two writes by the leader")
                if i % 2 == 0:
                    _wait(kube.in_flight.is_set, 180, "a PATCH in flight")
                    mid_patch += 1
                else:
                    time.sleep(random.uniform(0, 1.0))
                killed_at = time.time()
                head.kill()
                _wait(lambda k=killed_at: any(t > k for t in kube.received), 300, "the new leader's first write")
                seconds.append(min(t for t in kube.received if t > killed_at) - killed_at)
                head.start()  # back as a standby
            _wait(lambda: all(r.leading() or r.proc.poll() is None for r in replicas.values()), 60, "settling")
            writes = len(kube.received)
            _wait(lambda w=writes: len(kube.received) >= w + 2, 180, "the last leader's writes")  # it reconciled
        finally:
            for r in replicas.values():
                r.stop()
    rows = _journal(url)
    written = [n for _, n in kube.patches]
    counts: dict[int, int] = {}
    for n in written:
        counts[n] = counts.get(n, 0) + 1
    by_value: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_value.setdefault(int(row["params"]["replicas"]), []).append(row)
    unsettled = sum(1 for r in rows if r["state"] == "intent")
    applied_missing = sum(1 for r in rows if r["state"] == "applied" and int(r["params"]["replicas"]) not in counts)
    repeated = sum(c - 1 for c in counts.values() if c > 1)
    unjournaled = sum(1 for n in counts if n not in by_value)
    misjournaled = sum(1 for n in counts if n in by_value and all(r["state"] in ("reconciled", "failed")
                                                                  for r in by_value[n]))  # fmt: skip
    ordered = sorted(seconds)
    p95 = ordered[math.ceil(0.95 * len(ordered)) - 1] if ordered else None  # nearest rank
    return {
        "benchmark": "failover", "leader": leader, "interval": interval, "rounds": rounds,
        "killed_mid_patch": mid_patch, "p95_seconds": round(p95, 2) if p95 is not None else None,
        "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
        "max_seconds": round(max(seconds), 2) if seconds else None, "seconds": [round(s, 2) for s in seconds],
        "lost": unsettled + applied_missing, "applied_twice": repeated + unjournaled + misjournaled,
        "detail": {"writes": len(written), "journaled": len(rows), "unsettled": unsettled,
                   "applied_not_written": applied_missing, "written_twice": repeated, "unjournaled": unjournaled,
                   "written_but_journaled_not_applied": misjournaled},
        "lease_seconds": 15.0 if leader == "redis" else None,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--leader", choices=("postgres", "redis"), default="postgres")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--interval", default="15s", help="loop.interval of the policy (default: the shipped 15s)")
    p.add_argument("--patch-delay", type=float, default=0.5, help="seconds the fake API server takes per PATCH")
    args = p.parse_args()
    print(json.dumps(run(args.leader, args.rounds, args.interval, args.patch_delay)))


if __name__ == "__main__":
    main()
