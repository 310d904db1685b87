"""Predictive scaling for real: `empire run` with a forecast_and_scale target against a fake Prometheus
(instant and range queries over HTTP) and a fake Kubernetes API. The daemon fetches history with
`query_range`, fits and registers a model, and its decisions carry the forecast."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from fakes.kubernetes import FakeKubernetes, write_kubeconfig
from fakes.prometheus import FakePrometheus
from fakes.server import free_port

pytestmark = pytest.mark.slow
MAIN = "import sys; from empire.cli import main; sys.exit(main())"


def _wait(url: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=2)
            if last.status_code == 200 and check(last):
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url}: condition not met; last answer: {last.text if last is not None else None}")


def test_empire_run_forecasts_from_prometheus_history(tmp_path: Path):
    prom, kube = FakePrometheus(), FakeKubernetes(token="t")
    kube.add("gen", 2, "music")
    # a queue that swings every 10 minutes between 100 and 500 jobs (2 to 10 replicas at 50 each)
    prom.series["sum(queue_gen)"] = lambda t: 300.0 + 200.0 * math.sin(2 * math.pi * t / 600)
    port = free_port()
    with prom.serve() as purl, kube.serve() as kurl:
        write_kubeconfig(tmp_path / "kubeconfig", kurl, "t")
        (tmp_path / "policy.yaml").write_text(yaml.safe_dump({
            "loop": {"interval": "1s"},
            "targets": [{
                "name": "gen", "workload": {"name": "gen", "namespace": "music"}, "max_replicas": 20,
                "signals": [{"name": "queue", "query": "sum(queue_gen)", "type": "total", "target": 50}],
                "predictive": {"mode": "forecast_and_scale", "signal": "queue", "quantile": 0.9,
                               "scheduling_buffer": "30s", "history": "2h", "refit_every": "1h"},
            }],
        }))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
        env.update({
            "EMPIRE_DATA_DIR": str(tmp_path / "data"), "EMPIRE_PROMETHEUS__URL": purl,
            "EMPIRE_KUBERNETES__MODE": "kubeconfig", "EMPIRE_KUBERNETES__KUBECONFIG": str(tmp_path / "kubeconfig"),
            "EMPIRE_POLICY_FILE": str(tmp_path / "policy.yaml"), "EMPIRE_HTTP__PORT": str(port),
        })  # fmt: skip
        log = tmp_path / "daemon.log"
        with log.open("w") as fh:
            proc = subprocess.Popen([sys.executable, "-c", MAIN, "run"], env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            status = _wait(f"http://127.0.0.1:{port}/status",
                           lambda r: (r.json().get("predictive") or {}).get("gen", {}).get("model") is not None)  # fmt: skip
            model = status.json()["predictive"]["gen"]
            assert model["model"] in ("recent_level", "seasonal_naive", "naive"), model
            metrics = _wait(
                f"http://127.0.0.1:{port}/metrics", lambda r: 'empire_forecast_demand{target="gen"}' in r.text
            )
            assert "empire_forecast_refits_total{" in metrics.text and "empire_forecast_model_in_use{" in metrics.text
            assert any(q == "sum(queue_gen)" for q, _ in prom.queries)  # instant queries still drive the loop
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=90)  # a loaded 2-core machine can be slow to start every area
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)  # every thread's stack into the log: why it hangs
                time.sleep(2)  # a real process writing its stacks: no fake clock for that
                proc.kill()  # never leave a daemon behind
                pytest.fail("empire run did not stop within 90 s of SIGTERM:\n" + log.read_text()[-8000:])
    out = log.read_text()
    assert code == 0, out
    assert "predictive scaling: gen forecast_and_scale" in out and "gen: forecast model refitted" in out
