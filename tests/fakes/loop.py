"""Assemble a ControlLoop for tests: fake clock, given observer/executor, a real or memory store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from empire.agent.clock import FakeClock
from empire.agent.journal import ActionRunner
from empire.agent.loop import ControlLoop
from empire.agent.monitor import Monitor
from empire.agent.types import ScaleTo
from empire.policies.loading import LoadedPolicy, load_policy_text

__all__ = ["START", "build_loop", "policy", "target_spec"]

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def target_spec(name: str = "gen", **kw: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name, "workload": {"name": name, "namespace": "music"}, "min_replicas": 1, "max_replicas": 20,
        "signals": [{"name": "queue", "query": f"sum(queue_{name})", "type": "total", "target": 50}],
        "startup_grace": "0s",
    }  # fmt: skip
    spec.update(kw)
    return spec


def policy(*targets: dict[str, Any], **loop: Any) -> LoadedPolicy:
    body = {"loop": {"interval": "15s", **loop}, "targets": list(targets)}
    return load_policy_text(yaml.safe_dump(body), source="<test>")


def build_loop(
    loaded: LoadedPolicy, observer: Any, executor: Any, store: Any, *, clock: FakeClock | None = None, **kw: Any
) -> ControlLoop:
    clock = clock or FakeClock(START)
    monitor = Monitor(CollectorRegistry())
    runner = ActionRunner(store, {ScaleTo: executor}, clock, monitor, replica=kw.pop("replica", "test-1"),
                          leader=kw.get("leader"))  # fmt: skip
    return ControlLoop(policy=loaded, observer=observer, workloads=executor, runner=runner, store=store,
                       clock=clock, monitor=monitor, replica=runner.replica, **kw)  # fmt: skip
