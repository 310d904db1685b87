"""The HTTP endpoints (ASGI, in process), `empire explain` on a real journal, and periodic jobs."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.clock import SystemClock
from empire.agent.http import AppContext, build_app
from empire.agent.kube.dryrun import DryRunExecutor
from empire.agent.monitor import Monitor
from empire.agent.records import DecisionRecord
from empire.agent.scheduler import PeriodicJobs
from empire.agent.types import Sample
from empire.cli import main
from empire.state.database import Database
from empire.state.memory import MemoryStateStore
from empire.state.store import SqlStateStore
from fakes.loop import build_loop, policy, target_spec

pytestmark = pytest.mark.anyio


class Fixed:
    def __init__(self, value: float | None) -> None:
        self.value = value

    async def observe(self, target, now):
        return (Sample("queue", self.value, now, 2.0),)

    async def history(self, *a):
        return []

    async def aclose(self):
        return None


async def test_endpoints(tmp_path):
    loop = build_loop(policy(target_spec("gen")), Fixed(400.0), DryRunExecutor(), MemoryStateStore())

    async def echo(request):
        return JSONResponse({"n": len(await request.body())})

    ctx = AppContext(loop.monitor, loop, {"metric_source": "test"}, max_body_bytes=100)
    ctx.status_sections["pools"] = lambda: {"providers": 0}
    app = build_app(ctx, [Route("/echo", echo, methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503  # no tick yet
        await loop.tick()
        assert (await client.get("/readyz")).json() == {"status": "ready", "leader": True}
        status = (await client.get("/status")).json()
        assert status["targets"]["gen"]["reasons"] == ["above_target", "rate_limited_up"]
        assert status["targets"]["gen"]["actions"][0]["status"] == "skipped"  # the pretend cluster
        assert status["metric_source"] == "test" and status["pools"] == {"providers": 0}
        assert status["policy_version"] == loop.policy.version and status["leader"] is True
        metrics = (await client.get("/metrics")).text
        assert 'empire_decisions_total{reason="above_target",target="gen"} 1.0' in metrics
        assert (
            'empire_observation_staleness_seconds{namespace="music",signal="queue",target="gen",workload="gen",workload_kind="Deployment"} 2.0'
            in metrics
        )
        assert "empire_loop_tick_duration_seconds_count 1.0" in metrics
        assert (await client.post("/echo", content=b"x" * 50)).json() == {"n": 50}
        assert (await client.post("/echo", content=b"x" * 101)).status_code == 413
        loop.last_tick_wall -= 3600  # a wedged loop
        assert (await client.get("/healthz")).status_code == 503


async def test_explain_prints_every_reason(tmp_path, monkeypatch, capsys):
    url = f"sqlite+aiosqlite:///{tmp_path / 'empire.db'}"
    db = await Database.open(url)
    store = SqlStateStore(db)
    obs = Fixed(600.0)
    loop = build_loop(policy(target_spec("gen", max_replicas=8)), obs, DryRunExecutor(), store)
    await loop.tick()
    obs.value = None
    loop.clock.advance(15)
    await loop.tick()
    await db.close()
    monkeypatch.setenv("EMPIRE_DATABASE_URL", url)
    assert await anyio.to_thread.run_sync(main, ["explain", "gen", "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert "gen: last 2 decision(s), newest first" in out
    assert "reasons: signal_missing, no_change" in out
    assert "reasons: above_target, rate_limited_up" in out
    assert "signal queue: 600 vs target 50 (total), -> 12 replicas, age 2s" in out
    assert "rate limit up to 5" in out and "action scale 1 -> 5: skipped: dry_run" in out
    assert await anyio.to_thread.run_sync(main, ["explain", "nope"]) == 2
    assert "no decisions recorded for target 'nope' (targets with decisions: gen)" in capsys.readouterr().err


async def test_explain_masks_a_password_journaled_before_urls_were_masked(tmp_path, monkeypatch, capsys):
    """Decision rows written by an earlier version hold the Prometheus URL as it was configured."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'empire.db'}"
    db = await Database.open(url)
    error = "prometheus http://ops:OldPw77@prom:9090 unreachable: ConnectError: All connection attempts failed"
    await SqlStateStore(db).record_decision(DecisionRecord(
        "gen", datetime(2026, 3, 1, tzinfo=UTC), 2, 2, 2, ("metrics_unavailable", "no_change"),
        {"signals": {}, "error": error, "source_failures": 1},
    ))  # fmt: skip
    await db.close()
    monkeypatch.setenv("EMPIRE_DATABASE_URL", url)
    for fmt in ("text", "json"):
        assert await anyio.to_thread.run_sync(main, ["explain", "gen", "--format", fmt]) == 0
        out = capsys.readouterr().out
        assert "http://ops:***@prom:9090 unreachable" in out and "OldPw77" not in out


async def test_periodic_jobs_on_the_fake_clock_and_on_apscheduler():
    loop = build_loop(policy(target_spec("gen")), Fixed(50.0), DryRunExecutor(), MemoryStateStore())
    jobs = PeriodicJobs(loop.clock, loop.monitor)
    ran: list[str] = []

    async def refit(now):
        ran.append(f"refit@{now:%H:%M:%S}")

    async def broken(now):
        raise RuntimeError("boom")

    jobs.add("refit", timedelta(minutes=1), refit)
    jobs.add("broken", timedelta(seconds=30), broken)
    loop.jobs, loop.drive_jobs = jobs, True
    for _ in range(8):  # 2 minutes of 15 s ticks
        await loop.tick()
        loop.clock.advance(15)
    assert ran == ["refit@12:00:00", "refit@12:01:00"]
    reg = loop.monitor.registry
    assert reg.get_sample_value("empire_periodic_jobs_total", {"task": "broken", "result": "error"}) == 4

    wall = PeriodicJobs(SystemClock(), loop.monitor)
    count, twice = 0, anyio.Event()

    async def tick(now):
        nonlocal count
        count += 1
        if count == 2:
            twice.set()

    wall.add("fast", timedelta(seconds=0.05), tick)
    wall.start()
    try:
        with anyio.fail_after(5):  # apscheduler runs on the wall clock by design
            await twice.wait()
    finally:
        wall.shutdown()


@contextlib.asynccontextmanager
async def file_daemon(tmp_path, monkeypatch) -> AsyncIterator[tuple[Any, Path]]:
    """A daemon on SQLite following the policy file it returns (one target, `gen`)."""
    from empire.agent.daemon import build_daemon
    from empire.config.settings import load_settings

    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"targets": [target_spec("gen")]}))
    settings = load_settings(data_dir=tmp_path, kubernetes={"mode": "disabled"}, http={"port": 0})
    daemon = await build_daemon(settings, path)
    try:
        yield daemon, path
    finally:
        for close in daemon.closers:
            await close()


async def test_policy_reload_with_errors_keeps_the_policy_and_is_journaled(tmp_path, monkeypatch):
    from empire.agent.daemon import check_policy

    async with file_daemon(tmp_path, monkeypatch) as (daemon, path):
        version = daemon.loop.policy.version
        path.write_text("targets:\n  - name: gen\n    max_replicas: -1\n")
        assert await check_policy(daemon) is False
        assert daemon.loop.policy.version == version
        reg = daemon.monitor.registry
        assert reg.get_sample_value("empire_policy_reloads_total", {"result": "rejected"}) == 1
        assert "max_replicas" in daemon.context.status_sections["policy_reload_error"]()
        path.write_text(yaml.safe_dump({"targets": [target_spec("gen", max_replicas=30)]}))
        assert await check_policy(daemon) is True
        assert daemon.loop.policy.policy.targets[0].max_replicas == 30
        audit = [(a.action, a.details.get("kept_version")) for a in await daemon.store.recent_audit()]
        assert audit == [("policy_applied", None), ("policy_rejected", version)]


BAD_RELOADS = {
    "deep nesting": ("loop: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels deep"),
    "huge duration": ("loop: {interval: 1000000000d}\n", "loop.interval: duration '1000000000d' is longer than"),
    "infinite duration": ("loop: {interval: .inf}\n", "loop.interval: duration must be finite"),
    "zero interval": ("loop: {interval: 0s}\n", "loop.interval: must be between 1s and 1h"),
    "/dev/zero": (None, "larger than 1 MiB (the policy file limit)"),
}


@pytest.mark.parametrize("case", BAD_RELOADS)
async def test_every_rejected_reload_is_counted_and_shown(tmp_path, monkeypatch, case):
    """Each of these once kept the old policy with only a traceback in the log: no count, no
    /status error, so EmpirePolicyRejected never fired (issue 13)."""
    from empire.agent.daemon import check_policy

    async with file_daemon(tmp_path, monkeypatch) as (daemon, path):
        version = daemon.loop.policy.version
        text, message = BAD_RELOADS[case]
        if text is None:
            path.unlink()
            path.symlink_to("/dev/zero")
        else:
            path.write_text(text)
        with anyio.fail_after(10):
            assert await check_policy(daemon) is False
        assert daemon.loop.policy.version == version
        reg = daemon.monitor.registry
        assert reg.get_sample_value("empire_policy_reloads_total", {"result": "rejected"}) == 1
        assert message in daemon.context.status_sections["policy_reload_error"]()


async def test_a_policy_file_that_blocks_does_not_block_the_loop(tmp_path):
    """The policy is read in a worker thread: a file that takes long to read (here a FIFO whose
    writer waits for the event loop to prove it still runs) stalls neither ticks nor HTTP."""
    import os
    import threading

    from empire.policies.loading import PolicyWatcher

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"targets": [target_spec("gen")]}))
    watcher = PolicyWatcher(path)
    path.unlink()
    os.mkfifo(path)
    loop_ran = threading.Event()
    seen: list[bool] = []

    def writer() -> None:
        seen.append(loop_ran.wait(timeout=10))  # only waits this long when the read blocked the loop
        with open(path, "w") as fifo:
            fifo.write(yaml.safe_dump({"targets": [target_spec("gen", max_replicas=30)]}))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        async with anyio.create_task_group() as tg:

            async def other_work() -> None:  # runs only if the event loop is free while the file is read
                loop_ran.set()

            tg.start_soon(other_work)
            changed = await watcher.check_async()
    finally:
        loop_ran.set()
        thread.join()
    assert seen == [True], "the event loop did not run while the policy file was being read"
    assert changed and watcher.current.policy.targets[0].max_replicas == 30


async def test_shutdown_lets_a_job_in_flight_finish_before_the_database_closes():
    wall = PeriodicJobs(SystemClock(), Monitor())
    started, release, finished = anyio.Event(), anyio.Event(), []

    async def refit(now):
        started.set()
        await release.wait()
        finished.append(now)  # e.g. the model written to the registry

    wall.add("refit", timedelta(hours=1), refit)
    wall.start()
    with anyio.fail_after(5):
        await started.wait()

    async def close_soon():
        release.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wall.aclose)
        tg.start_soon(close_soon)
    assert len(finished) == 1


async def test_shutdown_cancels_a_job_past_its_grace():
    wall = PeriodicJobs(SystemClock(), Monitor())
    started = anyio.Event()

    async def stuck(now):
        started.set()
        await anyio.sleep_forever()

    wall.add("stuck", timedelta(hours=1), stuck)
    wall.start()
    with anyio.fail_after(5):
        await started.wait()
        await wall.aclose(grace=0.05)
