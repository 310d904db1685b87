"""One contract for every CallbackStore: the memory twin, SQLite and PostgreSQL behave alike.

A job is put in flight the way each store sees it: through the real JobQueue (claim, then the
provider's submission) for SQL, through `in_flight` for the twin."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from empire.agent.pools.callbacks import CallbackStore
from empire.agent.pools.jobs import NewJob
from empire.agent.pools.memory import MemoryCallbackStore
from empire.agent.pools.queue import Submitted, Succeeded
from empire.state.callbacks import SqlCallbackStore
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


@dataclass
class World:
    store: CallbackStore
    submit: Callable[[str, str], Awaitable[int]]  # (provider, provider job id) -> our job id, in flight
    finish: Callable[[int], Awaitable[None]]  # the job leaves flight (succeeded)


@pytest.fixture
def world(state_db: Database | None) -> World:
    if state_db is None:
        twin = MemoryCallbackStore()

        async def submit_twin(provider: str, pjid: str) -> int:
            twin.in_flight[(provider, pjid)] = ours = len(twin.in_flight) + 1
            return ours

        async def finish_twin(ours: int) -> None:
            twin.in_flight = {k: v for k, v in twin.in_flight.items() if v != ours}

        return World(twin, submit_twin, finish_twin)
    queue = SqlJobQueue(state_db)

    async def submit(provider: str, pjid: str) -> int:
        await queue.enqueue([NewJob(f"key-{pjid}", provider, {"prompt": "x"}, None)], T0)
        (job,) = await queue.claim("r1", T0, 1, 600)
        await queue.apply([Submitted(job.id, "r1", provider, "acct", pjid, 1.0, T0)])
        return job.id

    async def finish(ours: int) -> None:
        await queue.apply([Succeeded(ours, "r1", {"url": "x"}, 1.0, T0)])

    return World(SqlCallbackStore(state_db), submit, finish)


async def record(store: CallbackStore, provider: str, pjid: str, payload: dict, expected: bool = False) -> int | None:
    return await store.record(provider, pjid, payload, status="done", actor="http:127.0.0.1", at=T0, expected=expected)


async def test_a_callback_for_a_job_in_flight_is_kept_for_its_poll(world: World) -> None:
    ours = await world.submit("music", "pj-1")
    assert await world.store.lookup("music", "pj-1") is None  # nothing called back yet
    assert await record(world.store, "music", "pj-1", {"id": "pj-1", "status": "done"}) == ours
    assert await world.store.lookup("music", "pj-1") == {"id": "pj-1", "status": "done"}
    assert await world.store.lookup("voice", "pj-1") is None  # another provider's id space


async def test_a_callback_for_no_job_of_ours_is_refused_unless_expected(world: World) -> None:
    assert await record(world.store, "music", "pj-x", {"id": "pj-x"}) is None
    assert await record(world.store, "music", "pj-x", {"id": "pj-x"}, expected=True) is None
    assert await world.store.lookup("music", "pj-x") is None


async def test_a_finished_job_no_longer_takes_or_shows_callbacks(world: World) -> None:
    ours = await world.submit("music", "pj-2")
    await record(world.store, "music", "pj-2", {"id": "pj-2"})
    await world.finish(ours)
    assert await world.store.lookup("music", "pj-2") is None
    assert await record(world.store, "music", "pj-2", {"id": "pj-2"}) is None


async def test_the_last_callback_wins(world: World) -> None:
    await world.submit("music", "pj-3")
    await record(world.store, "music", "pj-3", {"id": "pj-3", "status": "running"})
    await record(world.store, "music", "pj-3", {"id": "pj-3", "status": "done"})
    assert await world.store.lookup("music", "pj-3") == {"id": "pj-3", "status": "done"}
