"""One contract for every HoldStore: the memory twin, SQLite and PostgreSQL behave alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.pools.holds import HoldKind, Holds, HoldStore
from empire.agent.pools.memory import MemoryHoldStore
from empire.state.database import Database
from empire.state.holds import SqlHoldStore

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
P, A = HoldKind.persona, HoldKind.account


@pytest.fixture
def store(state_db: Database | None) -> HoldStore:
    return MemoryHoldStore() if state_db is None else SqlHoldStore(state_db)


async def test_hold_and_release_report_only_changes(store: HoldStore) -> None:
    assert not await store.set(P, "nova", "manual", False, reason="manual", actor="a", at=T0)  # never held
    assert await store.set(P, "nova", "manual", True, reason="manual", actor="a", at=T0)
    assert not await store.set(P, "nova", "manual", True, reason="manual", actor="b", at=T0)  # already held
    assert await store.active() == Holds(frozenset({"nova"}), frozenset())
    assert await store.set(P, "nova", "manual", False, reason="manual", actor="a", at=T0 + timedelta(minutes=1))
    assert await store.active() == Holds()
    released = await store.get(P, "nova", "manual")
    assert released is not None and not released.held and released.updated_at == T0 + timedelta(minutes=1)
    assert await store.list() == [] and [h.subject for h in await store.list(held_only=False)] == ["nova"]


async def test_a_subject_is_held_while_any_source_holds_it(store: HoldStore) -> None:
    await store.set(A, "music/k1", "rule-a", True, reason="alert_firing", actor="agent", at=T0)
    await store.set(A, "music/k1", "rule-b", True, reason="alert_firing", actor="agent", at=T0)
    await store.set(A, "music/k1", "rule-a", False, reason="alert_resolved", actor="agent", at=T0)
    assert await store.active() == Holds(frozenset(), frozenset({"music/k1"}))
    hold = await store.get(A, "music/k1", "rule-b")
    assert hold is not None and hold.held and hold.reason == "alert_firing" and hold.actor == "agent"
    assert await store.get(A, "music/k1", "rule-c") is None


async def test_release_all_frees_every_source_and_counts_them(store: HoldStore) -> None:
    for source in ("rule-a", "rule-b", "manual"):
        await store.set(P, "nova", source, True, reason="alert_firing", actor="agent", at=T0)
    await store.set(P, "echo", "manual", True, reason="manual", actor="cli", at=T0)
    assert await store.release_all(P, "nova", actor="cli:ops", at=T0 + timedelta(hours=1)) == 3
    assert await store.release_all(P, "nova", actor="cli:ops", at=T0 + timedelta(hours=1)) == 0
    assert await store.active() == Holds(frozenset({"echo"}), frozenset())
    rows = await store.list(held_only=False)
    assert [(h.subject, h.source) for h in rows] == [("echo", "manual"), ("nova", "manual"), ("nova", "rule-a"),
                                                     ("nova", "rule-b")]  # fmt: skip
    assert {(h.reason, h.actor) for h in rows if h.subject == "nova"} == {("manual", "cli:ops")}


async def test_kinds_are_kept_apart(store: HoldStore) -> None:
    await store.set(P, "same", "manual", True, reason="manual", actor="a", at=T0)
    assert await store.get(A, "same", "manual") is None
    assert await store.release_all(A, "same", actor="a", at=T0) == 0
    assert await store.active() == Holds(frozenset({"same"}), frozenset())
