"""`EMPIRE_POLICY_SOURCE=database`: the agent runs the policy the operator applied, and follows it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from empire.agent.daemon import build_daemon, check_policy
from empire.config.settings import load_settings
from empire.operator.handoff import apply_policy
from empire.operator.spec import ConfigRef, parse_spec

pytestmark = pytest.mark.anyio


def spec(max_replicas: int) -> dict:
    return {
        "targets": [{"name": "gen", "workload": {"name": "gen"}, "max_replicas": max_replicas,
                     "signals": [{"name": "queue", "query": "sum(q)", "target": 50, "type": "total"}]}],
    }  # fmt: skip


@pytest.fixture
def settings(tmp_path, monkeypatch, database_url):
    for var in ("EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    return load_settings(data_dir=tmp_path, database_url=database_url, policy_source="database",
                         kubernetes={"mode": "disabled"}, http={"port": 0})  # fmt: skip


async def _close(daemon) -> None:
    for close in reversed(daemon.closers):
        await close()


async def test_idle_until_an_empireconfig_is_applied_then_follows_it(settings) -> None:
    daemon = await build_daemon(settings)
    try:
        assert daemon.policy().policy.targets == () and daemon.loop.dry_run
        assert daemon.policy().source.startswith("idle")
        seen = []
        daemon.policy_listeners.append(seen.append)

        ref = ConfigRef("empire", "main", 1)
        await apply_policy(daemon.store, parse_spec(spec(7), ref), datetime(2026, 5, 1, tzinfo=UTC))
        assert await check_policy(daemon) is True
        assert daemon.policy().policy.targets[0].max_replicas == 7 and not daemon.loop.dry_run
        assert daemon.policy().source == "EmpireConfig empire/main generation 1"
        assert seen == [daemon.policy()]  # areas hear about it too

        assert await check_policy(daemon) is False  # nothing new
        ref2 = ConfigRef("empire", "main", 2)
        await apply_policy(daemon.store, parse_spec(spec(9), ref2), datetime(2026, 5, 1, 0, 5, tzinfo=UTC))
        assert await check_policy(daemon) is True
        assert daemon.policy().policy.targets[0].max_replicas == 9
        assert [a.action for a in await daemon.store.recent_audit()][:1] == ["policy_applied"]
    finally:
        await _close(daemon)


async def test_restart_picks_up_the_policy_in_force(settings) -> None:
    first = await build_daemon(settings)
    try:
        await apply_policy(
            first.store, parse_spec(spec(5), ConfigRef("empire", "main", 3)), datetime(2026, 5, 1, tzinfo=UTC)
        )
    finally:
        await _close(first)
    again = await build_daemon(settings)
    try:
        assert again.policy().policy.targets[0].max_replicas == 5
    finally:
        await _close(again)


async def test_policy_file_argument_overrides_the_database_source(settings, tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("loop: {interval: 30s}\n")
    daemon = await build_daemon(settings, path)
    try:
        assert daemon.policy().source == str(path) and daemon.policy().policy.loop.interval.total_seconds() == 30
    finally:
        await _close(daemon)


async def test_retention_job_prunes_old_history(settings) -> None:
    from datetime import timedelta

    from empire.agent.records import DecisionRecord

    daemon = await build_daemon(settings)
    try:
        now = datetime(2026, 5, 20, tzinfo=UTC)
        for days in (0, 13, 15, 40):
            await daemon.store.record_decision(
                DecisionRecord("gen", now - timedelta(days=days), 1, 1, 1, ("no_change",))
            )
        job = daemon.jobs.jobs["retention"]
        assert job.interval == timedelta(hours=1)
        await job.func(now)
        left = [d.at for d in await daemon.store.recent_decisions("gen")]
        assert left == [now, now - timedelta(days=13)]  # EMPIRE_RETENTION__DECISIONS_DAYS defaults to 14
    finally:
        await _close(daemon)
