"""Planner -> Generate executor -> queue -> CLI, on a real state DB."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from empire.agent.clock import FakeClock
from empire.agent.pools.build import budget_limits, plan_inputs
from empire.agent.pools.executor import GenerateExecutor
from empire.agent.pools.jobs import JobState
from empire.agent.pools.planner import plan_generation
from empire.agent.ports import Executor
from empire.agent.records import ActionRecord, ActionState
from empire.agent.types import Generate, OutcomeStatus, Reason
from empire.cli import main
from empire.policies.loading import default_policy_path, load_policy
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue

NOW = datetime(2026, 6, 1, 9, 30, tzinfo=UTC)


@pytest.mark.anyio
async def test_plan_execute_is_idempotent_and_reads_back(database: Database) -> None:
    policy = load_policy(default_policy_path()).policy
    queue = SqlJobQueue(database, budget_limits(policy))
    executor = GenerateExecutor(queue, lambda: policy, FakeClock(NOW))
    assert isinstance(executor, Executor)

    plan = plan_generation(policy.personas, NOW, **await plan_inputs(queue, policy, NOW))
    assert {a.persona: a.count for a in plan.actions} == {"luna-waves": 4, "grit-city": 2}
    outcomes = [await executor.execute(a) for a in plan.actions]
    assert [o.status for o in outcomes] == [OutcomeStatus.applied, OutcomeStatus.applied]
    again = [await executor.execute(a) for a in plan.actions]  # a replayed intent
    assert [o.status for o in again] == [OutcomeStatus.unchanged] * 2 and again[0].reason is Reason.no_change
    # planning again in the same window asks for nothing more
    inputs = await plan_inputs(queue, policy, NOW)
    assert inputs["planned"] == {"luna-waves": 4, "grit-city": 2}
    assert inputs["queued_cost"] == {"music-sim": pytest.approx(6 * 0.08)}  # the dearest account's price
    assert plan_generation(policy.personas, NOW, **inputs).actions == ()

    jobs = await queue.list(persona="luna-waves")
    assert len(jobs) == 4 and {j.priority for j in jobs} == {0} and {j.provider for j in jobs} == {"music-sim"}
    assert {j.request["genre"] for j in jobs} == {"synthwave", "chillwave"}
    assert len({j.request["prompt"] for j in jobs}) == 4  # varied prompts, not one prompt four times
    assert jobs[0].request["providers"] == ["music-sim", "voice-sim"]

    action = plan.actions[0]
    rec = ActionRecord(
        idempotency_key="k", kind="generate", subject=action.subject, params=action.params(),
        reason=Reason.release_cadence.value, state=ActionState.intent, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    assert (await executor.read_back(rec)).applied is True
    missing = Generate("luna-waves", 2, "high", (Reason.release_cadence,), batch="19990101T000000Z")
    rec2 = ActionRecord("k2", "generate", missing.subject, missing.params(), "release_cadence", ActionState.intent,
                        NOW, NOW)  # fmt: skip
    assert (await executor.read_back(rec2)).applied is False


def test_cli_jobs_and_pools_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db_path = tmp_path / "empire.db"
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{db_path}")
    monkeypatch.delenv("EMPIRE_REDIS_URL", raising=False)
    policy = load_policy(default_policy_path()).policy

    async def setup() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            ex = GenerateExecutor(SqlJobQueue(db), lambda: policy, FakeClock(NOW))
            await ex.execute(Generate("grit-city", 3, "normal", (Reason.manual,), batch="b1"))
        finally:
            await db.close()

    anyio.run(setup)
    assert main(["jobs", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("queued") == 3 and "grit-city" in out
    assert main(["jobs", "cancel", "1", "99"]) == 1
    out = capsys.readouterr().out
    assert "job 1: cancelled" in out and "job 99: not found" in out
    assert main(["jobs", "retry", "1"]) == 0 and "queued again" in capsys.readouterr().out
    assert main(["jobs", "retry", "2"]) == 1 and "cannot retry" in capsys.readouterr().out
    assert main(["jobs", "show", "gen/grit-city/b1/2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == JobState.queued.value and shown["persona"] == "grit-city"
    assert main(["jobs", "show", "404"]) == 2
    huge = "1234567890123456789012345"  # was an OverflowError traceback out of SQLite (issue 13)
    assert main(["jobs", "show", huge]) == 2 and f"no job '{huge}'" in capsys.readouterr().err
    # "¹".isdigit() is true but int("¹") raises: was a traceback (found by the CLI property test)
    assert main(["jobs", "show", "¹"]) == 2 and "no job '¹'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["jobs", "cancel", huge])
    assert usage.value.code == 2 and "is not between 1 and" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["explain", "gen", "--last", huge])
    assert usage.value.code == 2 and "argument --last" in capsys.readouterr().err
    assert main(["jobs", "list", "--state", "queued", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["pools", "status", "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["queue"] == {"high": 0, "normal": 3, "low": 0}
    assert [a["name"] for a in status["providers"][0]["accounts"]] == ["main-1", "main-2"]
    assert main(["pools", "status"]) == 0
    assert "music-sim (simulated, least-busy, fallback voice-sim)" in capsys.readouterr().out


def test_pools_run_drains_the_simulated_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    db_path = tmp_path / "empire.db"
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{db_path}")
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EMPIRE_REDIS_URL", raising=False)
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        "providers:\n"
        "  - name: sim\n"
        "    simulated: {seed: 1, latency_mean: 50ms, latency_sd: 10ms}\n"
        "    cost_per_job: 0.1\n"
        "    accounts: [{name: s1, requests_per_minute: 6000, max_concurrent: 20}]\n"
        "personas:\n"
        "  - {name: nova, genres: [house], providers: [sim]}\n"
    )
    policy = load_policy(policy_file).policy

    async def setup() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            ex = GenerateExecutor(SqlJobQueue(db), lambda: policy, FakeClock(NOW))
            await ex.execute(Generate("nova", 12, "normal", (Reason.manual,), batch="b1"))
        finally:
            await db.close()

    anyio.run(setup)
    assert main(["pools", "run", "--policy", str(policy_file), "--drain"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["succeeded"] == 12
    # the tracks are in the hot tier of the policy's storage backend, and in the tiering inventory
    assert len([f for f in (tmp_path / "data" / "tiers" / "hot").rglob("trk-*") if f.is_file()]) == 12
    assert main(["tiers", "status", "--policy", str(policy_file), "--format", "json"]) == 0
    tiers = {r["tier"]: r for r in json.loads(capsys.readouterr().out)["tiers"]}
    assert tiers["hot"]["objects"] == 12
    assert main(["pools", "status", "--policy", str(policy_file), "--format", "json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["providers"][0]["accounts"][0]["succeeded_today"] == 12
    assert status["spend_today"] == pytest.approx(1.2)


@pytest.mark.anyio
async def test_generate_through_the_journaling_action_runner(database: Database) -> None:
    from empire.agent.journal import ActionRunner
    from empire.state.store import SqlStateStore

    policy = load_policy(default_policy_path()).policy
    queue = SqlJobQueue(database, budget_limits(policy))
    store = SqlStateStore(database)
    clock = FakeClock(NOW)
    runner = ActionRunner(store, {"generate": GenerateExecutor(queue, lambda: policy, clock)}, clock)
    action = Generate("luna-waves", 3, "high", (Reason.release_cadence,), ("music-sim",), ("synthwave",), "w1", 0)
    out = await runner.run(action)
    assert out.status is OutcomeStatus.applied and out.state["enqueued"] == 3
    (rec,) = await store.recent_actions("persona/luna-waves")
    assert rec.state is ActionState.applied and rec.reason == "release_cadence"
    assert len(await queue.list(persona="luna-waves")) == 3
    # an intent left unfinished by a crash is settled by reading the jobs table back
    stale = ActionRecord("gen-intent", "generate", action.subject, {**action.params(), "first": 0}, "release_cadence",
                         ActionState.intent, NOW, NOW)  # fmt: skip
    await store.write_intent(stale)
    results = await runner.reconcile()
    assert [r.settled_as for r in results] == [ActionState.applied]


def test_cli_holds_pause_and_drain_until_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{tmp_path / 'empire.db'}")
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EMPIRE_REDIS_URL", raising=False)
    monkeypatch.delenv("EMPIRE_POLICY_FILE", raising=False)
    assert main(["pools", "hold", "persona", "luna-waves"]) == 0
    assert "persona luna-waves paused" in capsys.readouterr().out
    assert main(["pools", "hold", "account", "music-sim/main-1"]) == 0
    assert main(["pools", "hold", "persona", "nobody"]) == 2  # not in the policy: one line, exit 2
    capsys.readouterr()
    assert main(["pools", "status"]) == 0
    out = capsys.readouterr().out
    assert "paused personas: luna-waves (manual since" in out and "drained accounts: music-sim/main-1" in out
    assert "(drained)" in out
    assert main(["pools", "status", "--format", "json"]) == 0
    holds = json.loads(capsys.readouterr().out)["holds"]
    assert {(h["kind"], h["subject"], h["source"]) for h in holds} == {
        ("persona", "luna-waves", "manual"),
        ("account", "music-sim/main-1", "manual"),
    }
    assert main(["pools", "release", "persona", "luna-waves"]) == 0
    assert "1 hold(s) released" in capsys.readouterr().out
    assert main(["pools", "release", "persona", "luna-waves"]) == 0
    assert "was not held" in capsys.readouterr().out
    assert main(["pools", "status", "--format", "json"]) == 0
    assert [h["subject"] for h in json.loads(capsys.readouterr().out)["holds"]] == ["music-sim/main-1"]


def test_cli_jobs_resolve_decides_unknown_outcome_jobs_and_audits_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from sqlalchemy import select, update

    from empire.state import tables as t

    db_path = tmp_path / "empire.db"
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{db_path}")
    policy = load_policy(default_policy_path()).policy

    async def setup() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            ex = GenerateExecutor(SqlJobQueue(db), lambda: policy, FakeClock(NOW))
            await ex.execute(Generate("grit-city", 4, "normal", (Reason.manual,), batch="b1"))
            async with db.begin() as conn:  # what a crash while submitting to a key-ignoring provider leaves
                await conn.execute(update(t.jobs).where(t.jobs.c.id <= 3).values(state="unknown_outcome"))
        finally:
            await db.close()

    async def read() -> tuple[dict[int, str], list[tuple[str, str, dict]]]:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            async with db.connect() as conn:
                states = {r.id: r.state for r in (await conn.execute(select(t.jobs))).all()}
                audit = [(r.action, r.subject, r.details) for r in (await conn.execute(select(t.audit))).all()
                         if r.action.startswith("jobs.")]  # fmt: skip
            return states, audit
        finally:
            await db.close()

    anyio.run(setup)
    assert main(["jobs", "list", "--state", "unknown_outcome", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["jobs", "resolve", "1", "--as", "done", "--note", "found at the provider"]) == 0
    assert "job 1: resolved as done" in capsys.readouterr().out
    assert main(["jobs", "resolve", "2", "--as", "failed"]) == 0
    assert main(["jobs", "resolve", "3", "--as", "resubmit"]) == 0
    assert main(["jobs", "resolve", "4", "--as", "done"]) == 1  # queued: nothing to resolve
    assert "job 4: is queued, cannot resolve" in capsys.readouterr().out
    states, audit = anyio.run(read)
    assert states == {1: "succeeded", 2: "dead", 3: "queued", 4: "queued"}
    assert [(a, s, d["outcome"], d["done"]) for a, s, d in audit] == [
        ("jobs.resolve", "job/1", "done", True), ("jobs.resolve", "job/2", "failed", True),
        ("jobs.resolve", "job/3", "resubmit", True), ("jobs.resolve", "job/4", "done", False),
    ]  # fmt: skip
