"""Generation inside the daemon: `build_daemon` on SQLite and PostgreSQL with a small policy, planner
ticks on a fake clock, the dispatcher carrying the jobs through a simulated provider (on the same
fake clock), tracks landing in the hot tier; pause/drain remediations, the callback endpoint,
budget gauges; and `empire run` on the embedded default generating real tracks end to end."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from empire.agent.clock import FakeClock
from empire.agent.daemon import Daemon, build_daemon
from empire.agent.http import build_app
from empire.agent.pools.jobs import JobState
from empire.agent.records import ActionRecord, ActionState
from empire.agent.types import DrainAccount, OutcomeStatus, PausePersona, Reason
from empire.config.settings import load_settings
from empire.state import tables as t
from fakes.server import free_port, serve_in_thread

pytestmark = pytest.mark.anyio
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
CB_TOKEN = "cb-token-0123456789"


def policy_doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "loop": {"interval": "15s"},
        "budget": {"daily": 20, "monthly": 100},
        "providers": [{
            "name": "sim", "kind": "simulated", "cost_per_job": 0.5, "budget": {"daily": 10},
            "simulated": {"seed": 3, "latency_mean": "400ms", "latency_sd": "50ms"},
            "accounts": [{"name": "s1", "requests_per_minute": 6000, "max_concurrent": 20},
                         {"name": "s2", "requests_per_minute": 6000, "max_concurrent": 20}],
        }],
        "personas": [{"name": "luna", "genres": ["synthwave", "chillwave"], "cadence": {"tracks": 3, "every": "1h"},
                      "providers": ["sim"], "priority": "high"}],
    }  # fmt: skip
    doc.update(over)
    return doc


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Any:
    for var in ("EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE",
                "EMPIRE_POLICY_SOURCE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CB_TOKEN", CB_TOKEN)
    monkeypatch.setenv("CB_API_KEY", "cb-api-key-abcdef")
    return load_settings(data_dir=tmp_path / "data", database_url=database_url, kubernetes={"mode": "disabled"},
                         http={"port": 0, "max_body_bytes": 4096}, replica_id="replica-1")  # fmt: skip


def write_policy(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / f"policy-{time.monotonic_ns()}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@asynccontextmanager
async def running(settings: Any, policy: Path, clock: FakeClock) -> AsyncIterator[Daemon]:
    """A daemon, leader after one tick, stepping its periodic jobs on the fake clock."""
    d = await build_daemon(settings, policy, clock=clock)
    try:
        await d.loop.start()
        await d.loop.tick()
        assert d.loop.is_leader
        yield d
    finally:
        await d.leader.release()
        for close in reversed(d.closers):
            await close()


async def plan(d: Daemon) -> list[str]:
    """One planner tick the way the step-driven loop runs periodic jobs."""
    return await d.jobs.run_due(d.clock.now())


async def dispatch(d: Daemon, clock: FakeClock, done: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    """Run the pools (as `empire run` does) while the fake clock moves 10x faster than the wall
    clock, until `done()`; then stop them the way SIGTERM does."""
    rt = d.services["pools"]
    async with anyio.create_task_group() as tg:
        tg.start_soon(rt.run)
        with anyio.fail_after(seconds):
            while not await done():
                clock.advance(0.25)
                await anyio.sleep(0.025)
        tg.cancel_scope.cancel()
    assert not rt.running


async def job_states(d: Daemon) -> dict[str, int]:
    out: dict[str, int] = {}
    for (state, _), n in (await d.services["pools"].queue.counts()).items():
        out[state] = out.get(state, 0) + n
    return out


def succeeded(d: Daemon, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await job_states(d)).get("succeeded", 0) >= n

    return check


async def test_planner_ticks_generate_tracks_into_the_hot_tier_exactly_once(settings: Any, tmp_path: Path) -> None:
    clock = FakeClock(START)
    async with running(settings, write_policy(tmp_path, policy_doc()), clock) as d:
        assert "generation-plan" in await plan(d)
        assert await job_states(d) == {"queued": 3}
        await dispatch(d, clock, succeeded(d, 3))
        clock.advance(15)
        assert "generation-plan" in await plan(d)  # the same window: nothing asked twice
        clock.advance(15)
        await plan(d)
        assert await job_states(d) == {"succeeded": 3}
        sim = d.services["pools"].dispatcher.adapters["sim"]
        assert sim.accepted == 3  # the provider generated each track once

        # each track is a content object in the hot tier, readable, with the right checksum
        backend = d.services["storage_backend"]
        async with d.db.connect() as conn:
            rows = (await conn.execute(select(t.content_objects))).all()
        jobs = await d.services["pools"].queue.list(limit=10)
        assert sorted(r.id for r in rows) == sorted(j.result["object_id"] for j in jobs if j.result)
        for r in rows:
            assert r.tier == "hot" and r.persona == "luna" and r.status in ("active", "quarantined")
            data = b"".join([c async for c in backend.read("hot", r.location)])
            assert data.startswith(b"RIFF") and r.checksum == "sha256:" + hashlib.sha256(data).hexdigest()
            assert r.size == len(data)

        # the Generate action is journaled with its reasons; the second tick journaled nothing new
        actions = [a for a in await d.store.recent_actions("persona/luna") if a.kind == "generate"]
        assert [(a.state, a.reason, a.params["count"], a.params["reasons"]) for a in actions] == [
            (ActionState.applied, "release_cadence", 3, ["release_cadence"])
        ]
        status = d.context.status_sections["pools"]()
        assert status["planner"]["actions"] == [] and status["dispatcher"]["stats"]["succeeded"] == 3
        assert status["providers"] == {"sim": "ok"} and status["content"].endswith("tier hot")

        # a new window plans again
        clock.advance(3600)
        await plan(d)
        assert (await job_states(d)).get("queued") == 3


async def test_budget_gauges_and_held_back_work_are_visible(settings: Any, tmp_path: Path) -> None:
    clock = FakeClock(START)
    doc = policy_doc()
    doc["providers"][0]["budget"] = {"daily": 1.0}  # two tracks at 0.5; the third is held back
    async with running(settings, write_policy(tmp_path, doc), clock) as d:
        await plan(d)
        assert await job_states(d) == {"queued": 2}
        await dispatch(d, clock, succeeded(d, 2))
        rt = d.services["pools"]
        await rt.refresh(clock.now())
        val = d.monitor.registry.get_sample_value
        assert val("empire_pool_budget_spend", {"provider": "sim", "period": "day"}) == pytest.approx(1.0)
        assert val("empire_pool_budget_limit", {"provider": "sim", "period": "day"}) == 1.0
        assert val("empire_pool_budget_limit", {"provider": "sim", "period": "month"}) is None  # no such budget
        assert val("empire_budget_spend", {"period": "month"}) == pytest.approx(1.0)
        assert (
            val("empire_budget_limit", {"period": "day"}) == 20
            and val("empire_budget_limit", {"period": "month"}) == 100
        )
        assert val("empire_generation_held", {"persona": "luna", "reason": "budget_exhausted"}) == 1
        metrics = build_app(d.context, d.routes)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=metrics), base_url="http://t") as c:
            text = (await c.get("/metrics")).text
        assert 'empire_pool_budget_spend{period="day",provider="sim"} 1.0' in text
        held = [a for a in await d.store.recent_actions("persona/luna") if a.params.get("held")]
        assert [(a.state, a.reason, a.params["count"]) for a in held] == [(ActionState.skipped, "budget_exhausted", 1)]
        clock.advance(15)
        await plan(d)  # the same hold again: journaled once per window, reason and count
        assert len([a for a in await d.store.recent_actions("persona/luna") if a.params.get("held")]) == 1
        assert d.context.status_sections["pools"]()["planner"]["held"] == [
            {"persona": "luna", "reason": "budget_exhausted", "count": 1}
        ]
        # spend + reservations never pass the provider's budget
        assert (await rt.queue.spend(clock.now())).provider_day("sim") <= 1.0 + 1e-9


async def test_pause_persona_holds_back_and_survives_a_restart(settings: Any, tmp_path: Path) -> None:
    clock = FakeClock(START)
    path = write_policy(tmp_path, policy_doc())
    pause = PausePersona("luna", True, (Reason.remediation, Reason.threshold), "queue-high")
    async with running(settings, path, clock) as d:
        await plan(d)  # 3 jobs queued, then the alert fires before they run
        out = await d.runner.run(pause, at=clock.now())
        assert out.status is OutcomeStatus.applied and out.state == {"held": True, "source": "queue-high"}
        rt = d.services["pools"]
        assert await rt.queue.claim("someone", clock.now(), 10, 60) == []  # queued jobs wait too
        again = await d.runner.run(pause, at=clock.advance(1))
        assert again.status is OutcomeStatus.unchanged
    clock.advance(3600)  # a new window, a new daemon
    async with running(settings, path, clock) as d2:
        await plan(d2)
        assert d2.context.status_sections["pools"]()["planner"]["held"] == [
            {"persona": "luna", "reason": "persona_paused", "count": 3}
        ]
        assert await job_states(d2) == {"queued": 3}  # only the first window's
        val = d2.monitor.registry.get_sample_value
        assert val("empire_persona_paused", {"persona": "luna"}) == 1
        assert val("empire_generation_held", {"persona": "luna", "reason": "persona_paused"}) == 3
        held = [a for a in await d2.store.recent_actions("persona/luna") if a.params.get("held")]
        assert [(a.state, a.reason) for a in held] == [(ActionState.skipped, "persona_paused")]
        # reconciliation reads the hold back
        executor = d2.runner.executor("pause_persona")
        rec = ActionRecord("k", "pause_persona", pause.subject, pause.params(), "remediation", ActionState.intent,
                           clock.now(), clock.now())  # fmt: skip
        assert (await executor.read_back(rec)).applied is True
        # the alert resolves: generation resumes, queued jobs are claimable again
        resume = PausePersona("luna", False, (Reason.remediation, Reason.threshold), "queue-high")
        assert (await d2.runner.run(resume, at=clock.advance(1))).status is OutcomeStatus.applied
        assert (await executor.read_back(rec)).applied is False
        clock.advance(15)
        await plan(d2)
        assert await job_states(d2) == {"queued": 6}
        assert val("empire_persona_paused", {"persona": "luna"}) == 0
        unknown = await d2.runner.run(PausePersona("nobody", True, (Reason.manual,)), at=clock.advance(1))
        assert unknown.status is OutcomeStatus.failed and "not in the policy" in (unknown.error or "")


async def test_drain_account_routes_new_jobs_elsewhere(settings: Any, tmp_path: Path) -> None:
    clock = FakeClock(START)
    path = write_policy(tmp_path, policy_doc())
    drain = DrainAccount("sim", "s1", True, (Reason.remediation, Reason.threshold), "sim-errors")
    async with running(settings, path, clock) as d:
        out = await d.runner.run(drain, at=clock.now())
        assert out.status is OutcomeStatus.applied
        assert d.services["pools"].dispatcher.pools.drained == frozenset({"sim/s1"})
        await plan(d)
        await dispatch(d, clock, succeeded(d, 3))
        jobs = await d.services["pools"].queue.list(limit=10)
        assert {(j.state, j.account) for j in jobs} == {(JobState.succeeded, "s2")}
        val = d.monitor.registry.get_sample_value
        assert val("empire_pool_account_drained", {"provider": "sim", "account": "s1"}) == 1
        assert d.context.status_sections["pools"]()["drained_accounts"] == ["sim/s1"]
    async with running(settings, path, clock) as d2:  # durable: another replica, or a restart, sees it
        rt = d2.services["pools"]
        await rt.refresh(clock.now())
        assert rt.dispatcher.pools.drained == frozenset({"sim/s1"})
        undrain = DrainAccount("sim", "s1", False, (Reason.remediation, Reason.threshold), "sim-errors")
        assert (await d2.runner.run(undrain, at=clock.advance(1))).status is OutcomeStatus.applied
        assert rt.dispatcher.pools.drained == frozenset()
        async with d2.db.connect() as conn:
            audit = [r.action for r in (await conn.execute(select(t.audit).order_by(t.audit.c.id))).all()]
        assert audit.count("pool_hold") == 1 and audit.count("pool_release") == 1


class CallbackProvider:
    """A callback-mode API over real HTTP: accepts jobs, never answers polls, serves results."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.keys: list[str | None] = []

        async def submit(request: Request) -> Response:
            key = request.headers.get("idempotency-key", "")
            self.keys.append(request.headers.get("authorization"))
            self.submitted.append(key)
            return JSONResponse({"id": f"cb-{hashlib.sha256(key.encode()).hexdigest()[:10]}", "status": "queued"}, 202)

        async def result(request: Request) -> Response:
            return Response(b"RIFF-callback-" + request.path_params["id"].encode(), media_type="audio/wav")

        self.app = Starlette(routes=[Route("/v1/jobs", submit, methods=["POST"]),
                                     Route("/v1/results/{id}", result)])  # fmt: skip


async def test_callback_endpoint_authenticates_records_and_completes_the_job(settings: Any, tmp_path: Path) -> None:
    fake = CallbackProvider()
    with serve_in_thread(fake.app) as url:
        doc = policy_doc()
        doc["providers"] = [{
            "name": "cbp", "kind": "http", "cost_per_job": 0.1,
            "http": {"submit_url": f"{url}/v1/jobs", "poll_interval": "100ms", "callback_secret": {"env": "CB_TOKEN"},
                     "result_meta_path": "result"},
            "accounts": [{"name": "k1", "api_key": {"env": "CB_API_KEY"}, "requests_per_minute": 600}],
        }]  # fmt: skip
        doc["personas"][0].update(providers=["cbp"], cadence={"tracks": 2, "every": "1h"})
        clock = FakeClock(START)
        async with running(settings, write_policy(tmp_path, doc), clock) as d:
            await plan(d)
            app = build_app(d.context, d.routes)
            transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 4242))
            rt = d.services["pools"]

            async def submitted() -> bool:
                return (await job_states(d)).get("submitted", 0) == 2

            async with (
                anyio.create_task_group() as tg,
                httpx.AsyncClient(transport=transport, base_url="http://t") as c,
            ):
                tg.start_soon(rt.run)
                with anyio.fail_after(30):
                    while not await submitted():  # noqa: ASYNC110 - polling the DB
                        await anyio.sleep(0.05)
                jobs = sorted(await rt.queue.list(limit=10), key=lambda j: j.id)
                first, second = jobs[0].provider_job_id, jobs[1].provider_job_id
                assert first and second and fake.keys == ["Bearer cb-api-key-abcdef"] * 2

                def body(job_id: str, status: str = "succeeded") -> dict[str, Any]:
                    return {"id": job_id, "status": status, "result": {
                        "url": f"{url}/v1/results/{job_id}", "title": f"Song {job_id}", "score": 0.99,
                        "persona": "luna", "genre": "synthwave"}}  # fmt: skip

                ok = {"Authorization": f"Bearer {CB_TOKEN}"}
                cb = "/v1/providers/cbp/callback"
                r = await c.post(cb, json=body(first))
                assert r.status_code == 401 and "missing callback token" in r.json()["error"]
                r = await c.post(cb, json=body(first), headers={"Authorization": "Bearer wrong"})
                assert r.status_code == 401 and CB_TOKEN not in r.text
                r = await c.post("/v1/providers/nope/callback", json=body(first), headers=ok)
                assert r.status_code == 404
                r = await c.post(cb, json={"status": "succeeded"}, headers=ok)
                assert r.status_code == 422 and "no job id" in r.json()["error"]
                r = await c.post(
                    cb, content=b'{"id": "' + b"x" * 5000 + b'"}', headers={**ok, "content-type": "application/json"}
                )
                assert r.status_code == 413
                r = await c.post(cb, json=body("cb-unknown"), headers=ok)
                assert r.status_code == 404 and "no job of ours" in r.json()["error"]
                # the waiting poll gets it at once
                r = await c.post(cb, json=body(first), headers=ok)
                assert r.status_code == 200 and r.json()["job"] == jobs[0].id
                # a callback another replica received: recorded on the row, found by the owner's poll
                rt.hubs["cbp"]._expected.clear()
                r = await c.post(cb, json=body(second), headers=ok)
                assert r.status_code == 200 and r.json()["job"] == jobs[1].id
                with anyio.fail_after(30):
                    while (await job_states(d)).get("succeeded", 0) < 2:  # noqa: ASYNC110 - polling the DB
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
            done = await rt.queue.list(limit=10)
            assert {j.state for j in done} == {JobState.succeeded} and len(fake.submitted) == 2
            async with d.db.connect() as conn:
                audit = (await conn.execute(select(t.audit).where(t.audit.c.action == "provider_callback"))).all()
                objects = (await conn.execute(select(t.content_objects))).all()
            assert sorted(a.subject for a in audit) == sorted(f"job/{j.id}" for j in jobs)
            assert {a.actor for a in audit} == {"http:10.9.8.7"} and audit[0].details["status"] == "succeeded"
            assert len(objects) == 2 and {o.tier for o in objects} == {"hot"}


@pytest.mark.slow
def test_empire_run_on_the_embedded_default_generates_tracks(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMPIRE_", "KUBE"))}
    env.update({"EMPIRE_DATA_DIR": str(tmp_path / "data"), "KUBECONFIG": str(tmp_path / "none"),
                "EMPIRE_HTTP__PORT": str(port)})  # fmt: skip
    log = tmp_path / "daemon.log"
    main = "import sys; from empire.cli import main; sys.exit(main())"
    with log.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", main, "run"], env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120  # the example's simulated latency is 20 s +- 5 s
        pools: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                pools = httpx.get(f"http://127.0.0.1:{port}/status", timeout=2).json().get("pools") or {}
            except httpx.HTTPError:
                pools = {}
            if pools.get("dispatcher", {}).get("stats", {}).get("succeeded", 0) >= 2:
                break
            time.sleep(0.5)
        assert pools["dispatcher"]["stats"]["succeeded"] >= 2, log.read_text()[-3000:]
        assert {a["persona"] for a in pools["planner"]["actions"]} <= {"luna-waves", "grit-city"}
        out = subprocess.run([sys.executable, "-c", main, "tiers", "status", "--format", "json"], env=env,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
        tiers = {r["tier"]: r for r in json.loads(out.stdout)["tiers"]}
        assert tiers["hot"]["objects"] >= 2  # in the tiering inventory
        hot = tmp_path / "data" / "tiers" / "hot"
        assert len([p for p in hot.rglob("*") if p.is_file()]) >= 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 0 and "stopped cleanly" in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
