"""The loop end to end on a fake clock: a fake Prometheus and a fake Kubernetes API over real HTTP,
the journal in a real database (SQLite, and PostgreSQL when available)."""

from __future__ import annotations

import math
from datetime import timedelta

import anyio
import pytest

from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.scaler import KubernetesScaler
from empire.agent.observers.prometheus import PrometheusObserver
from empire.agent.records import ActionState
from empire.agent.types import Reason
from empire.state.store import SqlStateStore
from fakes.kubernetes import FakeKubernetes
from fakes.loop import build_loop, policy, target_spec
from fakes.prometheus import FakePrometheus

pytestmark = pytest.mark.anyio
R = Reason


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def world():
    prom, kube = FakePrometheus(), FakeKubernetes(token="t")
    kube.add("gen", 2, "music")
    kube.add("api", 3, "music")
    with prom.serve() as purl, kube.serve() as kurl:
        prom.url, kube.url = purl, kurl
        yield prom, kube


def adapters(prom, kube):
    obs = PrometheusObserver(prom.url, retries=0, sleep=no_sleep)
    ex = KubernetesScaler(ClusterConfig(server=kube.url, source="test", token="t"), attempts=2, sleep=no_sleep)
    return obs, ex


def value(loop, name, **labels):
    return loop.monitor.registry.get_sample_value(name, labels)


async def test_scale_up_rate_limited_then_down_after_the_window(world, database):
    prom, kube = world
    store = SqlStateStore(database)
    obs, ex = adapters(prom, kube)
    loop = build_loop(policy(target_spec("gen")), obs, ex, store)
    prom.series["sum(queue_gen)"] = 600.0  # 12 replicas' worth

    (d,) = await loop.tick()
    assert (d.current, d.recommended, d.desired) == (2, 12, 6)  # HPA default: +100 % or +4 per 15 s
    assert d.reasons == (R.above_target, R.rate_limited_up)
    assert kube.replicas("gen", "music") == 6
    loop.clock.advance(15)
    (d,) = await loop.tick()
    assert (d.current, d.desired) == (6, 12) and kube.replicas("gen", "music") == 12

    prom.series["sum(queue_gen)"] = 100.0  # 2 replicas' worth: held for the 5-minute window
    seen = []
    for _ in range(21):
        loop.clock.advance(15)
        (d,) = await loop.tick()
        seen.append(d.desired)
    assert seen[:19] == [12] * 19 and seen[-1] == 2
    assert R.stabilized_down in (await store.recent_decisions("gen", limit=3))[-1].reasons

    actions = await store.recent_actions("gen", limit=10)
    assert [(a.params["current"], a.params["replicas"], a.state) for a in reversed(actions)] == [
        (2, 6, ActionState.applied), (6, 12, ActionState.applied), (12, 2, ActionState.applied)
    ]  # fmt: skip
    assert value(loop, "empire_actions_total", kind="scale", reason="above_target", result="applied") == 2
    gen = {"target": "gen", "namespace": "music", "workload": "gen", "workload_kind": "Deployment"}
    assert value(loop, "empire_desired_replicas", **gen) == 2
    assert (value(loop, "empire_min_replicas", **gen), value(loop, "empire_max_replicas", **gen)) == (1, 20)
    sig = {**gen, "signal": "queue"}
    assert (value(loop, "empire_signal_value", **sig), value(loop, "empire_signal_target", **sig)) == (100.0, 50.0)
    assert value(loop, "empire_decisions_total", target="gen", reason="stabilized_down") >= 18
    await obs.aclose()
    await ex.aclose()


async def test_bad_data_never_scales_down_and_fallback_fires(world, database):
    prom, kube = world
    store = SqlStateStore(database)
    obs, ex = adapters(prom, kube)
    spec = target_spec("gen", fallback={"mode": "fixed", "replicas": 5, "after_failures": 2},
                       behavior={"scale_down": {"stabilization_window": "0s",
                                                "policies": [{"type": "percent", "value": 100, "period": "15s"}]}})  # fmt: skip
    loop = build_loop(policy(spec), obs, ex, store)
    for bad in (math.nan, None, [({"pod": "a"}, 1.0), ({"pod": "b"}, 0.0)]):
        prom.series["sum(queue_gen)"] = bad
        (d,) = await loop.tick()
        assert d.desired == 2 and d.actions == ()
        loop.clock.advance(15)
    prom.series["sum(queue_gen)"] = 0.0
    prom.down = True
    (d,) = await loop.tick()
    assert d.reasons[0] == R.metrics_unavailable and d.desired == 2
    loop.clock.advance(15)
    (d,) = await loop.tick()
    assert R.fallback_fixed in d.reasons and kube.replicas("gen", "music") == 5
    assert value(loop, "empire_metric_source_up", source="prometheus") == 0
    prom.down = False
    loop.clock.advance(15)
    (d,) = await loop.tick()
    assert d.desired == 1 and d.reasons[0] == R.below_target  # good data again, zero queue: min_replicas
    await obs.aclose()
    await ex.aclose()


async def test_one_bad_target_never_stops_the_others(world, database):
    prom, kube = world
    store = SqlStateStore(database)
    obs, ex = adapters(prom, kube)
    loop = build_loop(policy(target_spec("ghost"), target_spec("gen"), target_spec("api")), obs, ex, store)
    prom.series.update({"sum(queue_ghost)": 500.0, "sum(queue_gen)": 300.0, "sum(queue_api)": 1000.0})
    kube.forbid("patch")
    decisions = {d.target: d for d in await loop.tick()}
    assert decisions["ghost"].reasons == (R.workload_unknown,) and decisions["ghost"].actions == ()
    assert decisions["gen"].desired == 6
    failed = await store.recent_actions("gen", limit=1)
    assert failed[0].state == ActionState.failed and failed[0].error.startswith("permanent:")
    assert 'resources: ["deployments/scale"]' in failed[0].error
    assert value(loop, "empire_actions_total", kind="scale", reason="above_target", result="failed") == 2
    kube.forbidden.clear()
    kube.fail_next(503)  # a transient error on the next request is retried inside the adapter
    loop.clock.advance(15)
    await loop.tick()
    assert (kube.replicas("gen", "music"), kube.replicas("api", "music")) == (6, 7)
    await obs.aclose()
    await ex.aclose()


async def test_dry_run_pause_pin_and_policy_reload(world, database):
    prom, kube = world
    store = SqlStateStore(database)
    obs, ex = adapters(prom, kube)
    loop = build_loop(policy(target_spec("gen"), dry_run=True), obs, ex, store)
    prom.series["sum(queue_gen)"] = 400.0
    (d,) = await loop.tick()
    assert d.dry_run and d.desired == 6 and kube.patches == []
    (a,) = await store.recent_actions("gen", limit=1)
    assert (a.state, a.error) == (ActionState.skipped, "dry_run")

    loop.set_policy(policy(target_spec("gen")))
    kube.workloads[("deployments", "music", "gen")].annotations["empire.io/paused"] = "true"
    loop.clock.advance(15)
    (d,) = await loop.tick()
    assert d.reasons[-1] == R.paused and kube.patches == []
    kube.workloads[("deployments", "music", "gen")].annotations = {"empire.io/pin-replicas": "3"}
    loop.clock.advance(15)
    (d,) = await loop.tick()
    assert d.reasons[0] == R.pinned and kube.replicas("gen", "music") == 3
    versions = await store.latest_policy_version()
    assert versions["version"] == loop.policy.version


async def test_sleep_is_woken_by_a_policy_reload(world, database):
    prom, kube = world
    obs, ex = adapters(prom, kube)
    loop = build_loop(policy(target_spec("gen")), obs, ex, SqlStateStore(database))
    from empire.agent.clock import SystemClock

    loop.clock = SystemClock()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop.sleep, 3600)
            await anyio.sleep(0.05)
            loop.set_policy(policy(target_spec("gen", max_replicas=30)))
    assert loop.policy.policy.targets[0].max_replicas == 30


async def test_history_survives_a_restart(world, database):
    """After a restart the scale-down window still remembers the high recommendations."""
    prom, kube = world
    store = SqlStateStore(database)
    obs, ex = adapters(prom, kube)
    loop = build_loop(policy(target_spec("gen")), obs, ex, store)
    prom.series["sum(queue_gen)"] = 300.0
    await loop.tick()
    assert kube.replicas("gen", "music") == 6
    loop.clock.advance(60)
    again = build_loop(policy(target_spec("gen")), obs, ex, store, clock=loop.clock)
    prom.series["sum(queue_gen)"] = 50.0
    (d,) = await again.tick()
    assert d.desired == 6 and R.stabilized_down in d.reasons
    hist = again.histories["gen"]
    assert hist.recommendations[0][1] == 6 and hist.last_scale_up_at is not None
    loop.clock.advance(timedelta(minutes=5).total_seconds())
    (d,) = await again.tick()
    assert d.desired == 1


async def test_database_briefly_unavailable(world):
    """No journal, no action: the tick carries on, nothing is scaled, the next tick recovers."""
    from empire.errors import TemporaryError
    from empire.state.memory import MemoryStateStore

    class Flaky(MemoryStateStore):
        down = False

        async def record_decision(self, rec):
            if self.down:
                raise TemporaryError("database unreachable")
            return await super().record_decision(rec)

        async def write_intent(self, rec):
            if self.down:
                raise TemporaryError("database unreachable")
            return await super().write_intent(rec)

    prom, kube = world
    obs, ex = adapters(prom, kube)
    store = Flaky()
    loop = build_loop(policy(target_spec("gen")), obs, ex, store)
    prom.series["sum(queue_gen)"] = 300.0
    store.down = True
    (d,) = await loop.tick()
    assert d.desired == 6 and kube.patches == []
    assert value(loop, "empire_loop_errors_total", stage="record", error_class="temporary") == 1
    assert value(loop, "empire_actions_total", kind="scale", reason="above_target", result="failed") == 1
    store.down = False
    loop.clock.advance(15)
    await loop.tick()
    assert kube.patches == [("gen", 6)]
    await obs.aclose()
    await ex.aclose()


async def test_replayed_trace_on_the_fake_clock(tmp_path):
    """The backtest's shape: a CSV trace, the pretend cluster, `run(ticks=N)` on a FakeClock."""
    from empire.agent.kube.dryrun import DryRunExecutor
    from empire.agent.observers.replay import ReplayObserver
    from empire.state.memory import MemoryStateStore
    from fakes.loop import START

    rows = ["timestamp,target,signal,value"]
    for minute in range(60):  # a one-hour ramp up and down, and a 2-minute outage at 00:30
        queue = 50 * (1 + min(minute, 60 - minute) // 3)
        rows.append(f"{(START + timedelta(minutes=minute)).isoformat()},gen,queue,{queue}")
    rows += [f"{(START + timedelta(minutes=30)).isoformat()},gen,@outage,1",
             f"{(START + timedelta(minutes=32)).isoformat()},gen,@outage,0"]  # fmt: skip
    trace = tmp_path / "trace.csv"
    trace.write_text("\n".join(rows) + "\n")
    store, cluster = MemoryStateStore(), DryRunExecutor()
    loop = build_loop(policy(target_spec("gen")), ReplayObserver.from_csv(trace), cluster, store)
    await loop.run(ticks=240)  # an hour of 15 s ticks, in well under a second of wall time
    assert loop.clock.now() == START + timedelta(seconds=15 * 239)
    reasons = {r for d in store.decisions for r in d.reasons}
    assert {"above_target", "stabilized_down", "metrics_unavailable"} <= reasons
    peak = max(d.desired for d in store.decisions)
    assert peak == 10 and cluster.replicas["gen"] < peak  # 500 queued at 00:29 (00:30 is in the outage)
