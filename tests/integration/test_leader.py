"""Several replicas, exactly one acts: file lock (SQLite), PostgreSQL advisory lock, Redis lease.
Losing the leadership stops acting within one tick, and a standby takes over."""

from __future__ import annotations

import errno
import fcntl
import os
import uuid
from pathlib import Path

import asyncpg
import pytest

from empire.agent.kube.dryrun import DryRunExecutor
from empire.agent.leader import FileLeader, PostgresLeader, RedisLeader, leader_for
from empire.agent.types import Sample
from empire.config.settings import load_settings
from empire.errors import ConfigError
from empire.state.memory import MemoryStateStore
from fakes.loop import build_loop, policy, target_spec

pytestmark = pytest.mark.anyio


class Queue:
    """An observer whose queue grows every tick, so every tick wants a change."""

    def __init__(self) -> None:
        self.value = 100.0

    async def observe(self, target, now):
        self.value += 100
        return (Sample("queue", self.value, now, 0.0),)

    async def history(self, *a):
        return []

    async def aclose(self):
        return None


class Counting(DryRunExecutor):
    def __init__(self, calls: list[str], name: str) -> None:
        super().__init__()
        self.calls, self.name = calls, name

    async def execute(self, action):
        self.calls.append(self.name)
        return await super().execute(action)


@pytest.fixture(params=["file", "postgres", "redis"])
def leaders(request, tmp_path):
    kind = request.param
    if kind == "file":
        return kind, [FileLeader(tmp_path) for _ in range(2)]
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        return kind, [PostgresLeader(url) for _ in range(2)]
    url, key = request.getfixturevalue("redis_url"), f"empire:test:{uuid.uuid4().hex}"
    return kind, [RedisLeader(url, f"r{i}", ttl=10, key=key) for i in (1, 2)]


def replica(name, leader, calls):
    spec = target_spec("gen", max_replicas=1000, behavior={"scale_up": {"stabilization_window": "0s",
                       "policies": [{"type": "pods", "value": 1000, "period": "1s"}]}})  # fmt: skip
    return build_loop(policy(spec), Queue(), Counting(calls, name), MemoryStateStore(), replica=name, leader=leader)


async def test_exactly_one_acts_and_a_standby_takes_over(leaders):
    _, (l1, l2) = leaders
    calls: list[str] = []
    r1, r2 = replica("r1", l1, calls), replica("r2", l2, calls)
    try:
        for _ in range(3):
            assert len(await r1.tick()) == 1
            assert await r2.tick() == []  # standby: observes nothing, decides nothing
            r1.clock.advance(15)
            r2.clock.advance(15)
        assert calls == ["r1"] * 3
        assert r1.monitor.registry.get_sample_value("empire_leader") == 1
        assert r2.monitor.registry.get_sample_value("empire_leader") == 0
        assert r2.snapshot()["leader"] is False

        await l1.release()  # the leader goes away (crash releases the same way: fd/session/lease)
        assert len(await r2.tick()) == 1
        assert await r1.tick() == []
        assert calls == ["r1"] * 3 + ["r2"]
    finally:
        await l1.release()
        await l2.release()


async def test_losing_the_lease_stops_acting_within_one_tick(leaders):
    kind, (l1, l2) = leaders
    calls: list[str] = []
    r1 = replica("r1", l1, calls)
    try:
        assert len(await r1.tick()) == 1
        if kind == "file":
            l1.path.unlink()  # the lock file deleted under the leader (rm, a tmp cleaner)
        elif kind == "redis":
            await l1._redis().set(l1.key, "intruder")  # another replica took the lease (expired, partition)
        else:
            admin = await asyncpg.connect(l1.url)
            pid = await l1._conn.fetchval("SELECT pg_backend_pid()")
            await admin.execute("SELECT pg_terminate_backend($1)", pid)  # the session is gone, so is the lock
            await admin.close()
            assert await l2.ensure() is True  # the standby can take it at once
        r1.clock.advance(15)
        assert await r1.tick() == []
        assert calls == ["r1"] and r1.is_leader is False
    finally:
        await l1.release()
        await l2.release()


def _replace(path: Path) -> None:
    """What a restore or a config tool does: a new file renamed over the old one."""
    (path.parent / "new.lock").write_text("")
    os.replace(path.parent / "new.lock", path)


@pytest.mark.parametrize(("tamper", "what"), [(Path.unlink, "deleted"), (_replace, "replaced")])
async def test_a_deleted_or_replaced_lock_file_never_makes_two_leaders(tmp_path, tamper, what):
    """Found by probing: `rm <data_dir>/leader.lock` under a running leader let a second daemon lock
    a new file at the same path, and both acted. The directory is locked too, and the holder checks
    that the path still names what it locked: it steps down (and journals why) before the other
    replica can take over, so at no point do both act."""
    l1, l2 = FileLeader(tmp_path), FileLeader(tmp_path)
    calls: list[str] = []
    r1, r2 = replica("r1", l1, calls), replica("r2", l2, calls)

    async def tick(r):
        r.clock.advance(15)
        decisions = await r.tick()
        assert not (l1.is_leader and l2.is_leader)
        return decisions

    try:
        assert len(await tick(r1)) == 1 and await tick(r2) == []
        tamper(tmp_path / "leader.lock")
        assert l1.is_leader is False  # checked before every action, not only once per tick
        assert await tick(r2) == []  # r1 still holds the directory: r2 cannot lead beside it
        assert await tick(r1) == []  # r1 notices and steps down ...
        assert r1.is_leader is False and r1.monitor.registry.get_sample_value("empire_leader") == 0
        [lost] = await r1.store.recent_audit()  # ... and journals why
        assert (lost.action, lost.subject) == ("leader_lost", "file")
        assert lost.details["reason"].startswith(f"{tmp_path / 'leader.lock'} was {what} while this replica held")
        assert len(await tick(r2)) == 1  # only now does r2 take over, alone
        assert await tick(r1) == []
        assert calls == ["r1", "r2"]
    finally:
        await l1.release()
        await l2.release()


async def test_the_lock_file_held_by_an_earlier_version_still_excludes(tmp_path):
    """A rolling update: the old version flocks only leader.lock; the new one must not lead beside it."""
    fd = os.open(tmp_path / "leader.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    leader = FileLeader(tmp_path)
    try:
        assert await leader.ensure() is False
        os.close(fd)  # the old version exits
        assert await leader.ensure() is True
    finally:
        await leader.release()


def test_leader_for_follows_the_deployment(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path))
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    assert isinstance(leader_for(load_settings()), FileLeader)
    monkeypatch.setenv("EMPIRE_REDIS_URL", "redis://127.0.0.1:1/0")
    assert isinstance(leader_for(load_settings()), RedisLeader)
    monkeypatch.setenv("EMPIRE_DATABASE_URL", "postgresql://u:p@127.0.0.1/db")
    assert isinstance(leader_for(load_settings()), PostgresLeader)


async def test_a_file_system_without_flock_is_an_error_not_a_silent_standby(tmp_path, monkeypatch):
    """EWOULDBLOCK means another replica leads; any other flock failure (ENOLCK on some network
    file systems) would leave every replica a silent standby, so it is a ConfigError naming the path."""

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    leader = FileLeader(tmp_path)
    with pytest.raises(ConfigError, match=f"cannot lock {tmp_path} for leader election: No locks available"):
        await leader.ensure()
    assert leader.is_leader is False and not leader._held
