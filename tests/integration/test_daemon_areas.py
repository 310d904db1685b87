"""Areas plug into `empire run` through one interface: a reload reaches every job, a broken area degrades.

Before the `Area` interface each area re-implemented reload itself: a new `loop.interval`
rescheduled the pools' jobs but neither `tiering-sweep` (on `storage.sweep_every`) nor
`alert-rules` nor `predictive-horizon`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from empire.agent.areas import AreaPlugin
from empire.agent.daemon import AREA_MODULES, build_daemon, check_policy
from empire.agent.http import build_app
from empire.config.settings import load_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path, monkeypatch, database_url):
    for var in ("EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE",
                "EMPIRE_POLICY_SOURCE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    return load_settings(data_dir=tmp_path, database_url=database_url, kubernetes={"mode": "disabled"},
                         http={"port": 0})  # fmt: skip


def policy_text(interval: str, sweep: str, backup: str = "5m") -> str:
    return f"loop: {{interval: {interval}}}\nstorage: {{sweep_every: {sweep}}}\nbackup: {{check_every: {backup}}}\n"


async def _close(daemon) -> None:
    for close in reversed(daemon.closers):
        await close()


def schedule(daemon) -> dict[str, timedelta]:
    return {name: job.interval for name, job in daemon.jobs.jobs.items()}


async def test_a_reload_reschedules_every_job_from_the_new_policy(settings, tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text("30s", "2h"))
    daemon = await build_daemon(settings, path)
    try:
        assert daemon.areas == {"tiering": "ok", "backup": "ok", "pools": "ok", "alerting": "ok", "predictive": "ok"}
        s, m, h = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
        assert schedule(daemon) == {
            "retention": h, "tiering-sweep": 2 * h, "persona-trends": 30 * s, "generation-plan": 30 * s, "business-metrics": 15 * m, "analytics-pull": 6 * h,
            "alert-rules": 30 * s, "predictive-refit": 5 * m, "predictive-horizon": 30 * s, "backup": 5 * m,
        }  # fmt: skip

        path.write_text(policy_text("45s", "3h", "10m"))
        assert await check_policy(daemon) is True
        assert schedule(daemon) == {
            "retention": h, "tiering-sweep": 3 * h, "persona-trends": 45 * s, "generation-plan": 45 * s, "business-metrics": 15 * m, "analytics-pull": 6 * h,
            "alert-rules": 45 * s, "predictive-refit": 5 * m, "predictive-horizon": 45 * s, "backup": 10 * m,
        }  # fmt: skip
        # every job went through the one registry whose rule the reload re-reads
        assert set(daemon.periodic) == set(daemon.jobs.jobs)
        assert all(schedule(daemon)[n] == j.every(daemon.policy().policy) for n, j in daemon.periodic.items())
    finally:
        await _close(daemon)


async def test_a_failing_area_leaves_the_daemon_running_degraded(settings, tmp_path, monkeypatch) -> None:
    import empire.agent.pools.setup as pools_setup

    def broken(deps):
        raise RuntimeError("provider table unreadable")

    monkeypatch.setattr(pools_setup, "AREA", AreaPlugin("pools", broken))
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text("30s", "2h"))
    daemon = await build_daemon(settings, path)
    try:
        assert "empire.agent.pools.setup" in AREA_MODULES
        assert daemon.areas["pools"] == "failed: provider table unreadable"
        assert daemon.areas["tiering"] == daemon.areas["alerting"] == daemon.areas["predictive"] == "ok"
        assert "generation-plan" not in daemon.jobs.jobs and "tiering-sweep" in daemon.jobs.jobs  # nothing half-wired
        await daemon.loop.start()
        await daemon.loop.tick()
        app = build_app(daemon.context, daemon.routes)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent") as client:
            ready = await client.get("/readyz")
            status = (await client.get("/status")).json()
        assert ready.status_code == 200
        assert ready.json()["degraded"] == ["pools: failed: provider table unreadable"]
        assert status["areas"]["pools"] == "failed: provider table unreadable"
    finally:
        await _close(daemon)
