"""The hand-off through the state DB (SQLite and PostgreSQL): the operator writes applied policy
versions, the agent's `DbPolicySource` picks up each new valid one exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from empire.agent.policysource import DbPolicySource
from empire.errors import TemporaryError
from empire.operator.handoff import apply_policy, withdraw_policy
from empire.operator.spec import ConfigRef, parse_spec
from empire.policies.loading import LoadedPolicy, default_policy_path
from empire.policies.schema import IDLE_POLICY, parse_policy
from empire.state.store import SqlStateStore

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def example() -> dict[str, Any]:
    return yaml.safe_load(default_policy_path().read_text())


def variant(**loop: Any) -> dict[str, Any]:
    spec = example()
    spec["loop"].update(loop)
    return spec


async def test_apply_writes_once_and_audits(database: Any) -> None:
    store = SqlStateStore(database)
    a = parse_spec(example(), ConfigRef("empire", "main", 1))
    first = await apply_policy(store, a, T0)
    assert (first.changed, first.version, first.previous) == (True, a.version, None)
    row = await store.latest_policy_version()
    assert (row["version"], row["source"], row["body"]) == (a.version, "EmpireConfig empire/main generation 1", a.body)
    again = await apply_policy(store, parse_spec(example(), ConfigRef("empire", "main", 2)), T0 + timedelta(hours=1))
    assert again.changed is False
    assert (await store.latest_policy_version())["applied_at"] == row["applied_at"]  # not re-stamped
    [audit] = await store.recent_audit()
    assert (audit.actor, audit.action, audit.subject) == ("operator", "policy.apply", "EmpireConfig empire/main")
    assert audit.details["version"] == a.version
    with pytest.raises(ValueError):
        await apply_policy(store, parse_spec({"loop": {"interval": "x"}}, ConfigRef("e", "m")), T0)


async def test_db_policy_source_delivers_each_new_valid_version_once(database: Any) -> None:
    store = SqlStateStore(database)
    seen: list[LoadedPolicy] = []
    source = DbPolicySource(store, on_change=seen.append)
    assert await source.check() is False and source.current is None  # nothing applied yet

    a = parse_spec(example(), ConfigRef("empire", "main", 1))
    await apply_policy(store, a, T0)
    assert await source.check() is True
    assert [p.version for p in seen] == [a.version]
    assert seen[0].policy == a.policy and seen[0].source == "EmpireConfig empire/main generation 1"
    assert parse_policy(yaml.safe_load(seen[0].text)) == a.policy
    assert await source.check() is False  # same version: no callback

    b = parse_spec(variant(interval="30s"), ConfigRef("empire", "main", 2))
    await apply_policy(store, b, T0 + timedelta(seconds=1))
    assert await source.check() is True and source.current.version == b.version

    await apply_policy(store, a, T0 + timedelta(seconds=2))  # back to an earlier version: re-stamped
    assert await source.check() is True
    assert [p.version for p in seen] == [a.version, b.version, a.version]


async def test_an_invalid_stored_version_is_skipped_and_the_current_policy_stays(database: Any, caplog) -> None:
    store = SqlStateStore(database)
    a = parse_spec(example(), ConfigRef("empire", "main", 1))
    await apply_policy(store, a, T0)
    seen: list[LoadedPolicy] = []
    source = DbPolicySource(store, on_change=seen.append)
    await source.check()
    bad = {"loop": {"interval": "15s", "tick": 1}}  # e.g. written by an operator of another release
    await store.save_policy_version(
        "bad0000000", "EmpireConfig empire/main generation 9", bad, T0 + timedelta(seconds=1)
    )
    assert await source.check() is False
    assert source.current.version == a.version and "loop.tick: unknown key" in source.last_error
    assert await source.check() is False  # logged once, not on every poll
    assert sum("rejected" in r.message for r in caplog.records) == 1
    assert len(seen) == 1


async def test_async_callbacks_and_a_starting_policy(database: Any) -> None:
    store = SqlStateStore(database)
    a = parse_spec(example(), ConfigRef("empire", "main", 1))
    await apply_policy(store, a, T0)
    got: list[str] = []

    async def on_change(p: LoadedPolicy) -> None:
        got.append(p.version)

    start = LoadedPolicy(policy=a.policy, version=a.version, source="file", text="")
    source = DbPolicySource(store, on_change=on_change, current=start)
    assert await source.check() is False  # the agent already runs that version
    b = parse_spec(variant(dry_run=True), ConfigRef("empire", "main", 2))
    await apply_policy(store, b, T0 + timedelta(seconds=1))
    assert await source.check() is True and got == [b.version]


async def test_withdraw_hands_over_or_idles(database: Any) -> None:
    store = SqlStateStore(database)
    first = parse_spec(example(), ConfigRef("empire", "first", 1))
    second = parse_spec(variant(interval="1m"), ConfigRef("empire", "second", 1))
    await apply_policy(store, first, T0)

    untouched = await withdraw_policy(store, ConfigRef("empire", "second", 1), False, None, T0 + timedelta(seconds=1))
    assert untouched.changed is False and (await store.latest_policy_version())["version"] == first.version

    handed = await withdraw_policy(store, first.ref, True, second, T0 + timedelta(seconds=2))
    assert handed.changed and (await store.latest_policy_version())["version"] == second.version

    source = DbPolicySource(store)
    await source.check()
    idle = await withdraw_policy(store, second.ref, True, None, T0 + timedelta(seconds=3))
    assert idle.version == parse_spec(IDLE_POLICY, second.ref).version
    row = await store.latest_policy_version()
    assert row["source"] == "idle: EmpireConfig empire/second was deleted"
    assert await source.check() is True
    policy = source.current.policy
    assert policy.loop.dry_run and policy.targets == () and policy.providers == () and policy.personas == ()
    actions = [a.action for a in await store.recent_audit()]
    assert actions.count("policy.withdraw") == 3


class FlakyStore:
    """The real store, but the first poll finds the database unreachable."""

    def __init__(self, store: SqlStateStore) -> None:
        self.store, self.calls = store, 0

    async def latest_policy_version(self) -> dict[str, Any] | None:
        self.calls += 1
        if self.calls == 1:
            raise TemporaryError("database unreachable")
        return await self.store.latest_policy_version()


async def test_run_keeps_polling_through_outages(database: Any) -> None:
    store = SqlStateStore(database)
    await apply_policy(store, parse_spec(example(), ConfigRef("empire", "main", 1)), T0)
    flaky = FlakyStore(store)
    sleeps: list[float] = []

    class Stop(Exception):
        pass

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise Stop

    seen: list[LoadedPolicy] = []
    source = DbPolicySource(flaky, on_change=seen.append, interval=7.0, sleep=sleep)
    with pytest.raises(Stop):
        await source.run()
    assert flaky.calls == 3 and sleeps == [7.0, 7.0, 7.0]
    assert len(seen) == 1  # delivered on the second poll, after the outage
