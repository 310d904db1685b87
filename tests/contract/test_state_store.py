"""One contract for every StateStore: the memory twin, SQLite and PostgreSQL behave alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.ports import StateStore
from empire.agent.records import ActionRecord, ActionState, AuditRecord, DecisionRecord, ModelRecord
from empire.state.database import Database
from empire.state.memory import MemoryStateStore
from empire.state.store import SqlStateStore

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(state_db: Database | None) -> StateStore:
    return MemoryStateStore() if state_db is None else SqlStateStore(state_db)


def intent(key: str, at: datetime = T0, subject: str = "api") -> ActionRecord:
    return ActionRecord(
        idempotency_key=key, kind="scale", subject=subject, params={"replicas": 5}, reason="above_target",
        state=ActionState.intent, created_at=at, updated_at=at, replica="r1",
    )  # fmt: skip


async def test_decisions_round_trip_newest_first(store: StateStore) -> None:
    for i in range(3):
        await store.record_decision(
            DecisionRecord(
                target="api", at=T0 + timedelta(minutes=i), current=2, recommended=3 + i, desired=3 + i,
                reasons=("above_target", "rate_limited_up"), details={"cpu": 0.9}, policy_version="v1",
            )
        )  # fmt: skip
    await store.record_decision(DecisionRecord("web", T0, 1, 1, 1, ("no_change",)))
    rows = await store.recent_decisions("api", limit=2)
    assert [r.desired for r in rows] == [5, 4]
    assert rows[0].reasons == ("above_target", "rate_limited_up") and rows[0].details == {"cpu": 0.9}
    assert rows[0].at == T0 + timedelta(minutes=2) and rows[0].at.tzinfo is not None
    assert len(await store.recent_decisions(limit=10)) == 4


async def test_intent_is_idempotent_and_settles_once(store: StateStore) -> None:
    a = await store.write_intent(intent("scale:api:1"))
    again = await store.write_intent(intent("scale:api:1"))
    assert a.id is not None and again.id == a.id
    assert [x.idempotency_key for x in await store.unfinished_actions()] == ["scale:api:1"]

    await store.finish_action(a.id, ActionState.applied, T0 + timedelta(seconds=1))
    await store.finish_action(a.id, ActionState.failed, T0 + timedelta(seconds=2), error="late duplicate")
    settled = await store.action_by_key("scale:api:1")
    assert settled is not None and settled.state == ActionState.applied and settled.error is None
    assert await store.unfinished_actions() == []


async def test_unfinished_actions_survive_for_reconciliation(store: StateStore) -> None:
    a = await store.write_intent(intent("k1"))
    b = await store.write_intent(intent("k2", subject="web"))
    await store.finish_action(b.id, ActionState.failed, T0, error="403 forbidden")
    assert [x.idempotency_key for x in await store.unfinished_actions()] == ["k1"]
    failed = await store.action_by_key("k2")
    assert failed is not None and failed.error == "403 forbidden" and failed.state == ActionState.failed
    assert [x.idempotency_key for x in await store.recent_actions("web")] == ["k2"]
    assert a.id != b.id


async def test_policy_versions(store: StateStore) -> None:
    assert await store.save_policy_version("v1", "p.yaml", {"loop": {}}, T0) is True
    assert await store.save_policy_version("v2", "p.yaml", {"loop": {"dry_run": True}}, T0 + timedelta(hours=1)) is True
    assert await store.save_policy_version("v1", "p.yaml", {"loop": {}}, T0 + timedelta(hours=2)) is False
    latest = await store.latest_policy_version()
    assert latest is not None and latest["version"] == "v1"
    v2 = await store.policy_version("v2")
    assert v2 is not None and v2["body"] == {"loop": {"dry_run": True}}


async def test_policy_applied_at_the_same_instant_is_never_a_tie(store: StateStore) -> None:
    for version in ("a", "b", "c", "b"):
        await store.save_policy_version(version, f"cr generation {version}", {"v": version}, T0)
    latest = await store.latest_policy_version()
    assert latest is not None and latest["version"] == "b" and latest["source"] == "cr generation b"


async def test_model_registry_keeps_one_in_use(store: StateStore) -> None:
    old = ModelRecord("forecast:api/queue", "demand", {"lags": 3}, {"mae": 10.0}, T0, blob=b"old", in_use=True)
    new = ModelRecord(
        "forecast:api/queue", "demand", {"lags": 3}, {"mae": 8.0}, T0 + timedelta(hours=6), blob=b"new", in_use=True
    )
    worse = ModelRecord("forecast:api/queue", "demand", {}, {"mae": 99.0}, T0 + timedelta(hours=12), blob=b"bad")
    for rec in (old, new, worse):
        await store.save_model(rec)
    used = await store.latest_model("forecast:api/queue")
    assert used is not None and used.blob == b"new" and used.metrics == {"mae": 8.0}
    newest = await store.latest_model("forecast:api/queue", in_use_only=False)
    assert newest is not None and newest.blob == b"bad"
    assert await store.latest_model("forecast:other") is None


async def test_audit_trail(store: StateStore) -> None:
    await store.audit(AuditRecord(T0, "ingest", "content.touch", "object/abc", {"n": 1}))
    await store.audit(AuditRecord(T0, "cli", "jobs.cancel", "job/7"))
    rows = await store.recent_audit()
    assert [r.action for r in rows] == ["jobs.cancel", "content.touch"] and rows[1].details == {"n": 1}
    assert [r.action for r in await store.recent_audit(actor="ingest")] == ["content.touch"]
    assert [r.subject for r in await store.recent_audit(action="jobs.cancel")] == ["job/7"]
    assert await store.recent_audit(actor="cli", action="content.touch") == []


async def test_prune_keeps_recent_history_unfinished_intents_and_models_in_use(store: StateStore) -> None:
    day = timedelta(days=1)
    for i in range(5):
        await store.record_decision(DecisionRecord("api", T0 - i * day, 2, 3, 3, ("above_target",)))
    old_applied = await store.write_intent(intent("old-applied", T0 - 30 * day))
    await store.finish_action(old_applied.id, ActionState.applied, T0 - 30 * day)
    await store.write_intent(intent("old-unfinished", T0 - 30 * day))
    await store.write_intent(intent("new", T0))
    await store.audit(AuditRecord(T0 - 400 * day, "cli", "old", "x"))
    await store.audit(AuditRecord(T0, "cli", "new", "x"))
    for i in range(6):  # the in-use model is the oldest one: it must survive
        await store.save_model(ModelRecord("m", "k", {}, {}, T0 + timedelta(hours=i), blob=b"x", in_use=(i == 0)))

    counts = await store.prune(
        decisions_before=T0 - 2 * day + timedelta(seconds=1), actions_before=T0 - day,
        audit_before=T0 - 365 * day, models_kept=2,
    )  # fmt: skip
    assert counts == {"decisions": 3, "actions": 1, "audit": 1, "models": 3}
    assert [d.at for d in await store.recent_decisions("api")] == [T0, T0 - day]
    assert {a.idempotency_key for a in await store.recent_actions(limit=10)} == {"old-unfinished", "new"}
    assert [a.action for a in await store.recent_audit()] == ["new"]
    in_use = await store.latest_model("m")
    assert in_use is not None and in_use.created_at == T0
    newest = await store.latest_model("m", in_use_only=False)
    assert newest is not None and newest.created_at == T0 + timedelta(hours=5)
