"""One contract for every AlertStore: the memory twin, SQLite and PostgreSQL behave alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.memory import MemoryAlertStore
from empire.agent.alerting.notification import Notification
from empire.agent.alerting.store import AlertStore
from empire.agent.types import Alert, Reason
from empire.errors import ConfigError, NotFoundError
from empire.state.alerts import SqlAlertStore
from empire.state.database import Database

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


@pytest.fixture
def store(state_db: Database | None) -> AlertStore:
    return MemoryAlertStore() if state_db is None else SqlAlertStore(state_db)


def alert(target: str = "api", value: float = 1.0, resolved: bool = False, note: str = "") -> Alert:
    return Alert("queue-high", "warning", {"alertname": "queue-high", "target": target}, "queue high",
                 (Reason.threshold,), value, resolved, {"note": note} if note else {})  # fmt: skip


def notification(receiver: str, group: str, at: datetime, *fired: str) -> Notification:
    return Notification(receiver, group, {"alertname": "queue-high"}, (), at, at + timedelta(hours=1),
                        extra={"fired": list(fired)})  # fmt: skip


async def test_one_firing_episode_per_fingerprint(store: AlertStore) -> None:
    assert await store.fire(alert(value=1.0), T0) is True
    assert await store.fire(alert(value=2.0, note="worse"), T0 + MIN) is False  # refreshed
    fp = fingerprint(alert().labels)
    latest = await store.latest(fp)
    assert latest is not None and latest.firing and latest.value == 2.0 and latest.annotations == {"note": "worse"}
    assert latest.starts_at == T0 and latest.updated_at == T0 + MIN
    assert await store.resolve(alert(value=0.5), T0 + 2 * MIN) is True
    assert await store.resolve(alert(), T0 + 3 * MIN) is False  # nothing firing
    done = await store.latest(fp)
    assert done is not None and not done.firing and done.ends_at == T0 + 2 * MIN and done.value == 0.5
    assert await store.fire(alert(), T0 + 4 * MIN) is True  # a new episode
    again = await store.latest(fp)
    assert again is not None and again.firing and again.starts_at == T0 + 4 * MIN
    assert await store.latest("no-such-fingerprint") is None


async def test_current_and_listed_alerts(store: AlertStore) -> None:
    await store.fire(alert("api"), T0)
    await store.fire(alert("web"), T0 + MIN)
    await store.fire(alert("old"), T0 - 60 * MIN)
    await store.resolve(alert("old"), T0 - 30 * MIN)
    await store.resolve(alert("web"), T0 + 2 * MIN)
    current = await store.current_alerts(resolved_since=T0)
    assert [a.labels["target"] for a in current] == ["api", "web"]  # oldest row first; "old" ended before
    assert [a.labels["target"] for a in await store.list_alerts()] == ["api"]
    assert [a.labels["target"] for a in await store.list_alerts("resolved")] == ["web", "old"]  # newest first
    assert [a.labels["target"] for a in await store.list_alerts(None)] == ["web", "api", "old"]
    assert [a.labels["target"] for a in await store.list_alerts(None, limit=1)] == ["web"]
    assert [a.labels["target"] for a in await store.list_alerts(None, target="old")] == ["old"]


async def test_silences(store: AlertStore) -> None:
    with pytest.raises(ConfigError):
        await store.add_silence(["target=api"], T0, T0, "ops", "", T0)
    a = await store.add_silence(["target=api"], T0, T0 + 60 * MIN, "ops", "deploy", T0)
    b = await store.add_silence(["severity=info"], T0 - MIN, T0 + 5 * MIN, "ops", "", T0)
    assert [s.id for s in await store.silences(T0)] == [b.id, a.id]  # by start
    assert [s.id for s in await store.silences(T0 + 10 * MIN)] == [a.id]  # b ended
    assert len(await store.silences(T0 + 10 * MIN, include_expired=True)) == 2
    ended = await store.expire_silence(a.id[:12].upper(), T0 + 20 * MIN)  # a prefix, any case
    assert ended.id == a.id and ended.ends_at == T0 + 20 * MIN and ended.matchers == ("target=api",)
    assert ended.comment == "deploy" and ended.created_by == "ops"
    assert (await store.expire_silence(a.id, T0 + 30 * MIN)).ends_at == T0 + 20 * MIN  # already ended: as it is
    with pytest.raises(NotFoundError):
        await store.expire_silence("zzzz", T0)
    with pytest.raises(ConfigError):
        await store.expire_silence("  ", T0)


async def test_outbox_items_change_only_while_pending(store: AlertStore) -> None:
    assert await store.enqueue([], T0) == []
    ids = await store.enqueue([notification("slack", "g1", T0), notification("email", "g1", T0),
                               notification("slack", "g2", T0)], T0)  # fmt: skip
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [i.id for i in await store.pending()] == ids
    assert await store.outbox_depth() == {"slack": 2, "email": 1}
    first = (await store.pending())[0]
    assert first.receiver == "slack" and first.state == "pending" and first.attempts == 0
    assert first.next_attempt_at == T0 and first.notification.group_key == "g1"

    await store.mark_retry(ids[0], 1, T0 + MIN, "x" * 3000)
    retried = (await store.pending())[0]
    assert retried.attempts == 1 and retried.next_attempt_at == T0 + MIN and len(retried.last_error or "") == 2000
    assert await store.mark_sent(ids[0], 2, T0 + 2 * MIN) is True
    assert await store.mark_sent(ids[0], 3, T0 + 3 * MIN) is False  # a late duplicate
    await store.mark_failed(ids[1], 5, "gone")
    await store.mark_failed(ids[0], 9, "late")  # sent already: unchanged
    assert [i.id for i in await store.pending()] == [ids[2]]
    assert await store.outbox_depth() == {"slack": 1}
    items = {i.id: i for i in await store.notifications()}
    assert items[ids[0]].state == "sent" and items[ids[0]].sent_at == T0 + 2 * MIN and items[ids[0]].attempts == 2
    assert items[ids[0]].last_error is None
    assert items[ids[1]].state == "failed" and items[ids[1]].last_error == "gone" and items[ids[1]].attempts == 5
    assert [i.id for i in await store.notifications()] == ids[::-1]  # newest first
    assert [i.id for i in await store.notifications("slack", limit=1)] == [ids[2]]


async def test_notification_log_is_the_newest_item_per_receiver_and_group(store: AlertStore) -> None:
    await store.fire(alert("api"), T0)
    (api,) = await store.list_alerts()
    old = Notification("slack", "g1", {}, (api,), T0, T0 + timedelta(hours=1))
    await store.enqueue([old], T0 - 10 * MIN)
    await store.enqueue([notification("slack", "g1", T0), notification("email", "g1", T0)], T0)
    await store.enqueue([Notification("slack", "g1", {}, (api,), T0 + MIN, T0 + timedelta(hours=1))], T0 + MIN)
    log = await store.notification_log(since=T0)
    assert set(log) == {("slack", "g1"), ("email", "g1")}
    assert log[("slack", "g1")].at == T0 + MIN and log[("slack", "g1")].firing == frozenset({api.fingerprint})
    assert log[("email", "g1")].firing == frozenset() and log[("email", "g1")].resolved == frozenset()
    assert set(await store.notification_log(since=T0 + 2 * MIN)) == set()
