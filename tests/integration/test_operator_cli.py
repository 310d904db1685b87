"""`empire operator run` as a user starts it: a real process, kopf.run, SIGTERM to stop; its own
metrics on `--metrics-port`.

The API server is kmock on 127.0.0.1 (`--server`); the state DB a SQLite file shared with the test.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from empire.operator.crd import GROUP, KIND, PLURAL, VERSION
from empire.operator.testing import kube_api
from empire.policies.loading import default_policy_path
from empire.state.database import Database
from empire.state.store import SqlStateStore
from fakes.server import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
NS = "empire"


def ready(api: Any) -> dict[str, Any] | None:
    for (res, ns, name), obj in list(api.objects.items()):
        if (res.plural, ns, name) == (PLURAL, NS, "empire") and not obj.deleted:
            conds = (obj.raw.get("status") or {}).get("conditions") or []
            return next((c for c in conds if c["type"] == "Ready"), None)
    return None


async def scrape(port: int, wanted: str) -> str:
    """The metrics page once it shows `wanted` (a handler's result is counted just after its patch)."""
    import httpx

    text = ""
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            if wanted in text:
                break
            await asyncio.sleep(0.05)
    return text


async def test_operator_run_applies_a_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'empire.db'}"
    env = {**os.environ, "EMPIRE_DATABASE_URL": db_url, "EMPIRE_DATA_DIR": str(tmp_path), "POD_NAMESPACE": NS}
    async with kube_api() as (api, url):
        spec = yaml.safe_load(default_policy_path().read_text())
        await api.post(f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}", json={
            "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "empire", "namespace": NS},
            "spec": spec})  # fmt: skip
        port = free_port()
        cmd = [sys.executable, "-m", "empire", "operator", "run", "--standalone", "--server", url,
               "--status-interval", "1", "--metrics-port", str(port), "--metrics-address", "127.0.0.1"]  # fmt: skip
        async with await anyio.open_process(cmd, env=env, stdout=None, stderr=None) as proc:
            try:
                for _ in range(600):
                    c = ready(api)
                    if c and c["status"] == "True":
                        break
                    assert proc.returncode is None, "the operator exited"
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("no Ready=True within 30 s")
                # applied by the change handler, or by the status timer taking over first (then "unchanged")
                applied = 'empire_operator_reconciles_total{handler="apply",result='
                metrics = await scrape(port, applied)
                assert applied in metrics and 'result="error"' not in metrics, metrics
                assert "empire_operator_reconcile_duration_seconds_count" in metrics
                assert "empire_operator_invalid_specs 0.0" in metrics
                assert "empire_operator_last_successful_reconcile_timestamp_seconds" in metrics
            finally:
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    code = await proc.wait()
        assert code == 0
    db = await Database.open(db_url)
    try:
        row = await SqlStateStore(db).latest_policy_version()
    finally:
        await db.close()
    assert row["source"] == f"EmpireConfig {NS}/empire generation 1"


def test_bad_flags_are_one_line_errors() -> None:
    import subprocess

    res = subprocess.run([sys.executable, "-m", "empire", "operator", "run", "-A", "-n", "x"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["empire: error: give either --namespace or --all-namespaces, not both"]
