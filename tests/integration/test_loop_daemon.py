"""`empire run` as a real process: it starts with nothing configured, serves HTTP on a real socket,
finishes and journals the in-flight action on SIGTERM (exit 0), and after a kill -9 the restarted
daemon reconciles the unfinished intent by reading it back instead of re-applying it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest
import yaml

from empire.agent.records import ActionState
from empire.state.database import Database
from empire.state.store import SqlStateStore
from fakes.kubernetes import FakeKubernetes, write_kubeconfig
from fakes.prometheus import FakePrometheus
from fakes.server import free_port

pytestmark = pytest.mark.slow
MAIN = "import sys; from empire.cli import main; sys.exit(main())"


def start(tmp: Path, *args: str, **env: str) -> tuple[subprocess.Popen, Path]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
    clean.update({"EMPIRE_DATA_DIR": str(tmp / "data"), "KUBECONFIG": str(tmp / "no-kubeconfig"), **env})
    log = tmp / f"daemon-{time.monotonic_ns()}.log"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", MAIN, "run", *args], env=clean, stdout=fh,
                                stderr=subprocess.STDOUT)  # fmt: skip
    return proc, log


def wait_http(url: str, timeout: float = 90) -> httpx.Response:
    """Wait for the daemon to answer: starting every area took 12 s at load average 7 on the
    shared 2-core machine, and over 30 s at 11."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == 200:
                return r
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready")
        time.sleep(0.1)


def test_runs_with_nothing_configured_and_stops_cleanly(tmp_path):
    port = free_port()
    proc, log = start(tmp_path, EMPIRE_HTTP__PORT=str(port))
    try:
        assert wait_http(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        ready = wait_http(f"http://127.0.0.1:{port}/readyz")
        assert ready.json()["leader"] is True
        status = httpx.get(f"http://127.0.0.1:{port}/status").json()
        assert status["metric_source"] == "none" and status["cluster"].startswith("none")
        assert status["targets"]["generator"]["reasons"][0] == "metrics_unavailable"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "empire_leader 1.0" in metrics and 'empire_metric_source_up{source="none"} 0.0' in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    out = log.read_text()
    assert code == 0, out
    assert "no metric source configured" in out and "no Kubernetes cluster" in out
    assert "tick failed" not in out and "stopped cleanly" in out


@pytest.fixture
def cluster(tmp_path):
    prom, kube = FakePrometheus(), FakeKubernetes(token="t")
    kube.add("gen", 2, "music")
    prom.series["sum(queue_gen)"] = 300.0  # 6 replicas' worth
    with prom.serve() as purl, kube.serve() as kurl:
        write_kubeconfig(tmp_path / "kubeconfig", kurl, "t")
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
            "loop": {"interval": "1s"},
            "targets": [{"name": "gen", "workload": {"name": "gen", "namespace": "music"}, "max_replicas": 10,
                         "signals": [{"name": "queue", "query": "sum(queue_gen)", "type": "total", "target": 50}]}],
        }))  # fmt: skip
        env = {"EMPIRE_PROMETHEUS__URL": purl, "EMPIRE_KUBERNETES__MODE": "kubeconfig",
               "EMPIRE_KUBERNETES__KUBECONFIG": str(tmp_path / "kubeconfig"),
               "EMPIRE_POLICY_FILE": str(tmp_path / "policy.yaml"), "EMPIRE_HTTP__PORT": "0"}  # fmt: skip
        yield prom, kube, env


def slow_patch(kube: FakeKubernetes, seconds: float) -> threading.Event:
    started = threading.Event()

    def hook(name: str) -> None:
        started.set()
        time.sleep(seconds)

    kube.before_patch = hook
    return started


def journal(tmp_path: Path) -> list:
    async def read() -> list:
        db = await Database.open(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'empire.db'}")
        try:
            store = SqlStateStore(db)
            return [await store.recent_actions("gen"), await store.recent_audit()]
        finally:
            await db.close()

    return anyio.run(read)


def test_sigterm_finishes_and_journals_the_action_in_flight(tmp_path, cluster):
    _, kube, env = cluster
    started = slow_patch(kube, 1.5)
    proc, log = start(tmp_path, **env)
    try:
        assert started.wait(30), log.read_text()
        proc.send_signal(signal.SIGTERM)  # while the PATCH is in flight
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    assert code == 0, log.read_text()
    actions, _ = journal(tmp_path)
    assert [(a.params["replicas"], a.state) for a in actions] == [(6, ActionState.applied)]
    assert kube.replicas("gen", "music") == 6
    assert "SIGTERM received" in log.read_text()


def test_kill_and_restart_reconciles_without_reapplying(tmp_path, cluster):
    _, kube, env = cluster
    started = slow_patch(kube, 1.0)
    proc, log = start(tmp_path, **env)
    try:
        assert started.wait(30), log.read_text()
        proc.kill()  # kill -9 while the PATCH is in flight: no chance to journal the outcome
        proc.wait(timeout=10)
    finally:
        proc.kill()
    deadline = time.monotonic() + 10
    while kube.replicas("gen", "music") != 6 and time.monotonic() < deadline:
        time.sleep(0.05)  # the API server still applies the write the dead client sent
    actions, _ = journal(tmp_path)
    assert [(a.params["replicas"], a.state) for a in actions] == [(6, ActionState.intent)]

    kube.before_patch = None
    proc, log2 = start(tmp_path, "--once", **env)
    assert proc.wait(timeout=60) == 0, log2.read_text()
    actions, audit = journal(tmp_path)
    assert [(a.params["replicas"], a.state) for a in actions] == [(6, ActionState.applied)]
    assert kube.patches == [("gen", 6)]  # read back, never re-applied
    assert any(a.action == "reconcile" and a.details["applied"] for a in audit)
    assert "reconciled scale gen" in log2.read_text()
