"""The journaling ActionRunner on a real database: intent before execution, outcome after, the error
class journaled, nothing executed without an intent, and read-back reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.monitor import Monitor
from empire.agent.records import ActionRecord, ActionState
from empire.agent.types import Generate, Outcome, OutcomeStatus, ReadBack, Reason, ScaleTo
from empire.errors import PermanentError, TemporaryError
from empire.state.memory import MemoryStateStore
from empire.state.store import SqlStateStore

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 3, 1, tzinfo=UTC)


class Recorder:
    """An executor that checks the intent exists when it runs, and can be told to fail."""

    def __init__(self, store, fail: Exception | None = None):
        self.store, self.fail, self.seen, self.applied = store, fail, [], {}

    async def execute(self, action):
        (row,) = [a for a in await self.store.recent_actions(action.subject, limit=1)]
        self.seen.append(row.state)
        if self.fail:
            raise self.fail
        self.applied[action.subject] = action.replicas
        return Outcome(OutcomeStatus.applied, state={"replicas": action.replicas})

    async def read_back(self, record):
        if record.subject == "unreadable":
            raise TemporaryError("cluster unreachable")
        have = self.applied.get(record.subject)
        return ReadBack(have == record.params["replicas"], {"replicas": have})


def scale(subject="web", replicas=4):
    return ScaleTo(subject, "ns", "Deployment", subject, replicas, 2, (Reason.above_target, Reason.rate_limited_up))


def runner(store, executor, **kw):
    return ActionRunner(store, {ScaleTo: executor}, FakeClock(NOW), Monitor(CollectorRegistry()), replica="r1", **kw)


async def test_intent_first_then_applied(database):
    store = SqlStateStore(database)
    ex = Recorder(store)
    r = runner(store, ex)
    out = await r.run(scale())
    assert out.status == OutcomeStatus.applied and ex.seen == [ActionState.intent]
    (row,) = await store.recent_actions("web")
    assert (row.state, row.reason, row.params["reasons"]) == (ActionState.applied, "above_target",
                                                             ["above_target", "rate_limited_up"])  # fmt: skip
    assert (await r.run(scale())).status == OutcomeStatus.duplicate  # same key: not executed twice
    assert len(ex.seen) == 1
    reg = r.monitor.registry
    assert (
        reg.get_sample_value("empire_actions_total", {"kind": "scale", "reason": "above_target", "result": "applied"})
        == 1
    )


@pytest.mark.parametrize(("exc", "cls"), [(TemporaryError("503 from API"), "temporary"),
                                          (PermanentError("forbidden"), "permanent"), (KeyError("bug"), "internal")])  # fmt: skip
async def test_failures_are_journaled_with_their_class(database, exc, cls):
    store = SqlStateStore(database)
    out = await runner(store, Recorder(store, exc)).run(scale())
    assert (out.status, out.error_class, out.reason) == (OutcomeStatus.failed, cls, Reason.execution_failed)
    (row,) = await store.recent_actions("web")
    assert row.state == ActionState.failed and row.error.startswith(f"{cls}:")


async def test_no_intent_no_action():
    class BrokenStore(MemoryStateStore):
        async def write_intent(self, rec):
            raise TemporaryError("database unreachable")

    store = BrokenStore()
    ex = Recorder(store)
    out = await runner(store, ex).run(scale())
    assert out.status == OutcomeStatus.failed and ex.seen == [] and ex.applied == {}


async def test_dry_run_pause_unknown_kind_and_not_leader():
    store = MemoryStateStore()
    ex = Recorder(store)
    assert (await runner(store, ex, dry_run=True).run(scale())).reason == Reason.dry_run
    paused = ScaleTo("p", "ns", "Deployment", "p", 3, 1, (Reason.above_target, Reason.paused))
    assert (await runner(store, ex).run(paused)).reason == Reason.paused
    gen = Generate("luna", 2, "high", (Reason.release_cadence,))
    out = await runner(store, ex).run(gen)
    assert out.status == OutcomeStatus.failed and "no executor registered for 'generate'" in out.error

    class Follower:
        name, is_leader = "test", False

    assert (await runner(store, ex, leader=Follower()).run(scale("x"))).reason == Reason.not_leader
    assert ex.applied == {} and await store.action_by_key("x") is None


async def test_reconcile_reads_back_and_never_reapplies(database):
    store = SqlStateStore(database)
    ex = Recorder(store)

    async def intent(subject, replicas):
        await store.write_intent(ActionRecord(f"scale:{subject}", "scale", subject, scale(subject, replicas).params(),
                                              "above_target", ActionState.intent, NOW, NOW, replica="dead-1"))  # fmt: skip

    await intent("took", 5)
    await intent("lost", 6)
    await intent("unreadable", 7)
    ex.applied["took"] = 5  # the crashed replica's write reached the cluster
    r = runner(store, ex)
    results = {x.record.subject: x.settled_as for x in await r.reconcile()}
    assert results == {"took": ActionState.applied, "lost": ActionState.reconciled, "unreadable": None}
    assert ex.seen == [] and ex.applied == {"took": 5}  # nothing re-applied
    lost = await store.action_by_key("scale:lost")
    assert lost.state == ActionState.reconciled and "not" in lost.error
    assert [x.record.subject for x in await r.reconcile()] == ["unreadable"]
    audit = await store.recent_audit()
    assert {a.subject for a in audit if a.action == "reconcile"} == {"took", "lost"}


class Slow(Recorder):
    """An executor whose write lands but whose answer never arrives (a hung API call)."""

    async def execute(self, action):
        import anyio

        self.applied[action.subject] = action.replicas
        await anyio.Event().wait()


async def test_a_timed_out_action_is_settled_by_read_back_not_guessed(database):
    store = SqlStateStore(database)
    ex = Slow(store)
    out = await runner(store, ex, timeout=0.01).run(scale())
    assert out.status == OutcomeStatus.applied  # the write landed: journaled as applied, not "failed"
    (row,) = await store.recent_actions("web")
    assert row.state == ActionState.applied and "timed out" in row.error and "took effect" in row.error


async def test_a_timed_out_action_that_did_not_land_is_a_temporary_failure(database):
    store = SqlStateStore(database)
    ex = Slow(store)
    ex.applied = type("Forgetful", (dict,), {"__setitem__": lambda *a: None})()
    out = await runner(store, ex, timeout=0.01).run(scale())
    assert (out.status, out.error_class) == (OutcomeStatus.failed, "temporary")
    (row,) = await store.recent_actions("web")
    assert row.state == ActionState.failed and "timed out after 0.01s" in row.error
