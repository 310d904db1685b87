"""Spending by returns on a real state DB: revenue ingested into the inventory -> the planner's
allocation -> jobs, journaled with the evidence -> `empire explain persona/NAME`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest
from prometheus_client import CollectorRegistry

from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.pools.build import budget_limits
from empire.agent.pools.executor import GenerateExecutor
from empire.agent.pools.holds import HoldKind
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.plan_job import GenerationPlanner
from empire.agent.records import ActionState
from empire.agent.tiering.inventory import ContentObject, RevenueFigure
from empire.agent.types import Reason
from empire.cli import main
from empire.policies.schema import Policy
from empire.state.content import SqlContentCatalog
from empire.state.database import Database
from empire.state.holds import SqlHoldStore
from empire.state.inventory import SqlInventory
from empire.state.jobs import SqlJobQueue
from empire.state.store import SqlStateStore

NOW = datetime(2026, 6, 1, 0, 0, 10, tzinfo=UTC)
POLICY = Policy.model_validate({
    "providers": [{"name": "music", "cost_per_job": 1.0, "accounts": [{"name": "a"}]}],
    "personas": [
        {"name": "gold", "genres": ["lofi"], "providers": ["music"], "cadence": {"tracks": 2, "every": "1d"}},
        {"name": "lead", "genres": ["jazz"], "providers": ["music"], "cadence": {"tracks": 2, "every": "1d"}},
    ],
    "spending": {"strategy": "returns", "floor": {"skip_hopeless": False}},  # every persona its floor, as explained
})  # fmt: skip


async def published(db: Database, persona: str, genre: str, revenue: float, n: int = 20) -> list[str]:
    """`n` tracks published 40 days ago, their revenue to date set through the ingest path."""
    inventory, ids = SqlInventory(db), []
    at = NOW - timedelta(days=40)
    for i in range(n):
        oid = f"trk-{persona}-{i}"
        await inventory.register(ContentObject(oid, 1000, "sha256:" + "0" * 64, "hot", f"{oid}.wav", at, at, persona=persona,
                                               meta={"genre": genre, "provider": "music"}))  # fmt: skip
        ids.append(oid)
    await inventory.record_revenue([RevenueFigure(i, revenue) for i in ids], actor="test", at=NOW)
    return ids


def planner_for(
    db: Database, clock: FakeClock, metrics: PoolMetrics | None = None
) -> tuple[GenerationPlanner, SqlJobQueue, SqlStateStore]:
    queue, store = SqlJobQueue(db, budget_limits(POLICY)), SqlStateStore(db)
    runner = ActionRunner(store, {"generate": GenerateExecutor(queue, lambda: POLICY, clock)}, clock)
    planner = GenerationPlanner(queue, SqlHoldStore(db), lambda: POLICY, lambda a, now: runner.run(a, at=now), store,
                                catalog=SqlContentCatalog(db), metrics=metrics)  # fmt: skip
    return planner, queue, store


@pytest.mark.anyio
async def test_the_day_goes_to_the_persona_whose_tracks_earn(database: Database) -> None:
    await published(database, "gold", "lofi", 6.0)
    lead = await published(database, "lead", "jazz", 0.2, n=40)
    clock = FakeClock(NOW)
    registry = CollectorRegistry()
    metrics = PoolMetrics(registry)
    metrics.configure(POLICY.providers, [p.name for p in POLICY.personas])
    planner, queue, store = planner_for(database, clock, metrics)

    plan = await planner(NOW)
    assert {a.persona: a.count for a in plan.actions} == {"gold": 3, "lead": 1}  # the cadences' 4, floors first
    assert planner.last is not None and planner.last["spending"]["spend_target_today"] == 4.0
    assert len(await queue.list(persona="gold")) == 3
    (rec,) = await store.recent_actions("persona/gold")
    assert rec.state is ActionState.applied and rec.reason == "data_floor"
    evidence = {a["reason"]: a for a in rec.params["allocation"]}
    assert evidence["expected_return"]["count"] == 2 and evidence["floor"]["count"] == 1
    assert 5.0 < evidence["expected_return"]["expected"] < 7.0
    (lead_rec,) = await store.recent_actions("persona/lead")
    assert lead_rec.params["reasons"] == ["data_floor"]

    # what it learned, in Prometheus: lead loses money (40 tracks at 0.2 on a dollar each)
    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert 5.0 < (sample("empire_persona_return_per_dollar", persona="gold") or 0) < 7.0
    assert sample("empire_persona_revenue", persona="gold") == pytest.approx(120.0)
    assert sample("empire_persona_losing", persona="lead") == 1 and sample("empire_persona_losing", persona="gold") == 0
    assert sample("empire_generation_allocated", persona="gold", reason="expected_return") == 2
    assert planner.last["spending"]["losing"][0]["persona"] == "lead"

    # ticks later the same day ask for nothing more
    assert (await planner(NOW + timedelta(minutes=5))).actions == ()

    # the platforms revise lead's figures upward (revenue to date replaces the earlier figure):
    # the next day, once the catalog is re-read, the money follows
    inventory = SqlInventory(database)
    await inventory.record_revenue([RevenueFigure(i, 30.0) for i in lead], actor="test", at=NOW)
    tomorrow = NOW + timedelta(days=1)
    plan = await planner(tomorrow)
    assert {a.persona: a.count for a in plan.actions} == {"lead": 4}  # both fed yesterday: no floor due


@pytest.mark.anyio
async def test_a_losing_persona_is_paused_when_the_policy_allows(database: Database) -> None:
    policy = POLICY.model_copy(update={"spending": POLICY.spending.model_copy(update={"pause_losing": True})})
    await published(database, "gold", "lofi", 6.0)
    await published(database, "lead", "jazz", 0.2, n=40)
    clock = FakeClock(NOW)
    queue, store, holds = SqlJobQueue(database, budget_limits(policy)), SqlStateStore(database), SqlHoldStore(database)
    runner = ActionRunner(store, {"generate": GenerateExecutor(queue, lambda: policy, clock)}, clock)
    planner = GenerationPlanner(queue, holds, lambda: policy, lambda a, now: runner.run(a, at=now), store,
                                catalog=SqlContentCatalog(database))  # fmt: skip
    await planner(NOW)
    hold = await holds.get(HoldKind.persona, "lead", "spending")
    assert hold is not None and hold.held and hold.reason.startswith("losing: 0.")
    assert (await holds.active()).personas == {"lead"}
    tomorrow = await planner(NOW + timedelta(days=1))  # its cadence is now held back, the money goes to gold
    assert {a.persona for a in tomorrow.actions} == {"gold"}
    assert ("lead", Reason.persona_paused) in {(h.persona, h.reason) for h in tomorrow.held}
    assert await holds.release_all(HoldKind.persona, "lead", actor="ops", at=NOW) == 1  # the operator's override


def test_explain_shows_a_personas_allocation_and_its_evidence(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    db_path = f"{tmp_path}/empire.db"
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{db_path}")

    async def setup() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            await published(db, "gold", "lofi", 6.0)
            await published(db, "lead", "jazz", 0.2)
            planner, _, _ = planner_for(db, FakeClock(NOW))
            await planner(NOW)
        finally:
            await db.close()

    anyio.run(setup)
    assert main(["explain", "persona/gold"]) == 0
    out = capsys.readouterr().out
    assert "generate 3 track(s) (window 20260601T000000Z, from #0): applied" in out
    assert "reasons: data_floor, expected_return" in out
    assert "floor: 1 x lofi" in out and "expected return: 2 x lofi: " in out and "per $ +- " in out
    assert main(["explain", "gold"]) == 0 and "expected return" in capsys.readouterr().out  # without the prefix
    assert main(["explain", "persona/nobody"]) == 2
    assert "no generation actions journaled for 'persona/nobody'" in capsys.readouterr().err


def test_report_shows_spend_revenue_and_return_per_dollar_per_persona(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from sqlalchemy import insert

    from empire.state import tables as t

    db_path = f"{tmp_path}/empire.db"
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{db_path}")
    now = datetime.now(UTC)

    async def setup() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            inventory = SqlInventory(db)
            for persona, n, revenue, cost in (("gold", 4, 3.0, 1.0), ("lead", 5, 0.1, 0.5)):
                for i in range(n):
                    oid = f"trk-{persona}-{i}"
                    at = now - timedelta(days=3)
                    await inventory.register(ContentObject(oid, 1000, "sha256:" + "0" * 64, "hot", f"{oid}.wav", at, at,
                                                           persona=persona))  # fmt: skip
                    await inventory.record_revenue([RevenueFigure(oid, revenue)], actor="test", at=now)
                    async with db.begin() as conn:
                        await conn.execute(insert(t.jobs).values(
                            idempotency_key=f"gen/{persona}/b/{i}", persona=persona, provider="music", priority=1,
                            state="succeeded", attempts=1, not_before=at, request={}, cost=cost, created_at=at,
                            updated_at=at, finished_at=at,
                        ))  # fmt: skip
            old = now - timedelta(days=60)  # outside the period: neither its spend nor its revenue counts
            await inventory.register(ContentObject("trk-old", 1000, "sha256:" + "0" * 64, "hot", "old.wav", old, old,
                                                   persona="gold"))  # fmt: skip
            await inventory.record_revenue([RevenueFigure("trk-old", 100.0)], actor="test", at=now)
        finally:
            await db.close()

    anyio.run(setup)
    assert main(["report", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["persona"]: r for r in out["personas"]}
    assert rows["gold"] == {"persona": "gold", "spend": 4.0, "jobs": 4, "tracks": 4, "revenue": 12.0, "roi": 3.0}
    assert rows["lead"]["roi"] == pytest.approx(0.2) and rows["lead"]["spend"] == 2.5
    assert [r["persona"] for r in out["personas"]] == ["gold", "lead"]  # best return first
    assert out["total"] == {"spend": 6.5, "revenue": 12.5, "roi": pytest.approx(12.5 / 6.5, abs=1e-4)}
    chart = f"{tmp_path}/report.png"
    assert main(["report", "--period", "7d", "--plot", chart]) == 0
    text = capsys.readouterr().out
    assert "gold" in text and "3.00" in text and f"chart: {chart}" in text
    with open(chart, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert main(["report", "--period", "soon"]) == 2
    assert "--period" in capsys.readouterr().err


def test_report_per_platform_and_trend_capture(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Revenue, views and ROI per platform from the performance figures (spend: publishing there plus
    an even share of the generation), and what tracks planned on a trend boost earn vs the rest."""
    from sqlalchemy import insert

    from empire.agent.pools.performance import PerformanceFigure
    from empire.state import tables as t
    from empire.state.performance import SqlPerformanceStore

    db_path = f"{tmp_path}/empire.db"
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{db_path}")
    now = datetime.now(UTC)
    at = now - timedelta(days=3)

    async def setup() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            inventory = SqlInventory(db)
            figures = []
            for i in range(2):  # gold: 2 tracks at 1.0 each, the first planned on a trend boost
                oid = f"trk-gold-{i}"
                await inventory.register(ContentObject(oid, 1000, "sha256:" + "0" * 64, "hot", f"{oid}.wav", at, at,
                                                       persona="gold", meta={"trend_boost": True} if i == 0 else {}))  # fmt: skip
                figures += [PerformanceFigure(oid, "youtube", at.date(), 100, 10, 3.0 if i == 0 else 1.0),
                            PerformanceFigure(oid, "tiktok", at.date(), 1000, 50, 0.5)]  # fmt: skip
                async with db.begin() as conn:
                    for key, provider, cost in ((f"gen/gold/b/{i}", "music", 1.0), (f"pub/{oid}/youtube", "youtube", 0.25),
                                                (f"pub/{oid}/tiktok", "tiktok", 0.0)):  # fmt: skip
                        await conn.execute(insert(t.jobs).values(
                            idempotency_key=key, persona="gold", provider=provider, priority=1, state="succeeded",
                            attempts=1, not_before=at, request={}, cost=cost, created_at=at, updated_at=at,
                            finished_at=at,
                        ))  # fmt: skip
            await SqlPerformanceStore(db).record(figures, actor="test", at=now, source="csv")
        finally:
            await db.close()

    anyio.run(setup)
    assert main(["report", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    youtube, tiktok = out["platforms"]  # by revenue
    # youtube: revenue 3 + 1; spend 2 x 0.25 publishing + half of the 2.0 generation
    assert youtube == {"platform": "youtube", "tracks": 2, "views": 200, "engagement": 20, "revenue": 4.0,
                       "spend": 1.5, "roi": pytest.approx(4 / 1.5, abs=1e-4)}  # fmt: skip
    assert tiktok["revenue"] == 1.0 and tiktok["spend"] == 1.0 and tiktok["views"] == 2000
    assert [(r["persona"], r["platform"]) for r in out["persona_platforms"]] == [
        ("gold", "youtube"),
        ("gold", "tiktok"),
    ]
    assert out["personas"][0]["revenue"] == 5.0  # the inventory's revenue follows the figures
    capture = out["trend_capture"]
    assert capture["boosted"]["tracks"] == 1 and capture["boosted"]["per_track"] == 3.5
    assert capture["rest"]["per_track"] == 1.5 and capture["ratio"] == pytest.approx(3.5 / 1.5, abs=1e-4)
    chart = f"{tmp_path}/report.png"
    assert main(["report", "--plot", chart]) == 0
    text = capsys.readouterr().out
    assert "per platform" in text and "youtube" in text and "trend capture: 1 tracks" in text
    with open(chart, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_content_show_lists_a_tracks_publications(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from empire.agent.clock import SystemClock
    from empire.agent.pools.build import build_dispatcher
    from empire.agent.pools.dispatcher import DispatcherOptions
    from empire.agent.pools.jobs import JobPriority
    from empire.agent.pools.publish import ContentPublisher, DirectoryContentSink, publication_jobs
    from empire.policies.schema import parse_policy

    db_path = f"{tmp_path}/empire.db"
    monkeypatch.setenv("EMPIRE_DATABASE_URL", f"sqlite:///{db_path}")
    monkeypatch.setenv("EMPIRE_DATA_DIR", f"{tmp_path}/data")
    policy = parse_policy({"providers": [{"name": "tiktok", "kind": "simulated", "accounts": [{"name": "a"}],
                                          "simulated": {"latency_mean": "10ms", "latency_sd": "1ms"}}]})  # fmt: skip

    async def setup() -> None:
        db = await Database.open(f"sqlite+aiosqlite:///{db_path}")
        try:
            at = datetime.now(UTC)
            await SqlInventory(db).register(ContentObject("trk-1", 1000, "sha256:" + "0" * 64, "hot", "t.wav", at, at,
                                                          persona="gold"))  # fmt: skip
            queue, catalog = SqlJobQueue(db), SqlContentCatalog(db)
            await queue.enqueue(publication_jobs("trk-1", "gold", "Song", ["tiktok"], JobPriority.normal), at)
            publisher = ContentPublisher(catalog, DirectoryContentSink(catalog, Path(f"{tmp_path}/tiers")),
                                         lambda: policy.compliance, SystemClock())  # fmt: skip
            d = build_dispatcher(policy, queue, DispatcherOptions(owner="t", stop_when_empty=True, idle_poll=0.01),
                                 publisher=publisher)  # fmt: skip
            try:
                with anyio.fail_after(60):
                    await d.run()
            finally:
                await d.aclose()
        finally:
            await db.close()

    anyio.run(setup)
    assert main(["content", "show", "trk-1"]) == 0
    assert "published: tiktok succeeded sim://tiktok/pub/trk-1/tiktok" in capsys.readouterr().out
    assert main(["content", "show", "trk-1", "--format", "json"]) == 0
    (pub,) = json.loads(capsys.readouterr().out)["publications"]
    assert pub["platform"] == "tiktok" and pub["state"] == "succeeded"
