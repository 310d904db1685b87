"""The Observer port: Prometheus (against a fake Prometheus over real HTTP) and trace replay agree on
what a signal's sample means; then each adapter's own failure handling."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from empire.agent.observers.none import NoSource
from empire.agent.observers.prometheus import PrometheusObserver
from empire.agent.observers.replay import ReplayObserver
from empire.agent.types import SampleStatus
from empire.errors import PermanentError, TemporaryError
from empire.policies.scaling import Target
from fakes.prometheus import FakePrometheus

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def target(*signals: str) -> Target:
    return Target.model_validate({
        "name": "gen", "workload": {"name": "gen"}, "max_replicas": 10,
        "signals": [{"name": s, "query": f"q_{s}", "target": 1, "max_staleness": "1m"} for s in signals],
    })  # fmt: skip


async def no_sleep(_: float) -> None:
    return None


@pytest.fixture
def fake_prom():
    fake = FakePrometheus()
    with fake.serve() as url:
        fake.url = url
        yield fake


@pytest.fixture(params=["prometheus", "replay"])
async def observer_with_data(request, fake_prom, tmp_path: Path):
    """An observer where signal `a` is 3.5 now, `b` has no data and `c` is NaN."""
    if request.param == "prometheus":
        fake_prom.series.update({"q_a": 3.5, "q_b": None, "q_c": math.nan})
        obs = PrometheusObserver(fake_prom.url, retries=0, sleep=no_sleep)
    else:
        trace = tmp_path / "trace.csv"
        t = NOW.isoformat()
        trace.write_text(f"timestamp,target,signal,value\n{t},gen,a,3.5\n{t},,c,NaN\n")
        obs = ReplayObserver.from_csv(trace)
    yield obs
    await obs.aclose()


async def test_samples_have_value_timestamp_staleness_and_status(observer_with_data):
    a, b, c = await observer_with_data.observe(target("a", "b", "c"), NOW)
    assert (a.signal, a.value, a.status, a.staleness) == ("a", 3.5, SampleStatus.ok, 0.0)
    assert a.at == NOW
    assert (b.signal, b.value, b.status) == ("b", None, SampleStatus.missing)
    assert c.status == SampleStatus.invalid and math.isnan(c.value)


async def test_prometheus_more_than_one_series_is_a_clear_error(fake_prom):
    fake_prom.series["q_a"] = [({"pod": "a-1"}, 1.0), ({"pod": "a-2"}, 2.0)]
    obs = PrometheusObserver(fake_prom.url, retries=0)
    (s,) = await obs.observe(target("a"), NOW)
    assert s.status == SampleStatus.invalid
    assert "returned 2 series" in s.error and 'pod="a-2"' in s.error and "sum(q_a)" in s.error
    await obs.aclose()


async def test_prometheus_bad_query_is_one_signal_problem(fake_prom):
    fake_prom.series["q_b"] = 1.0
    fake_prom.bad["q_a"] = 'parse error: unexpected "}"'
    obs = PrometheusObserver(fake_prom.url, retries=0)
    a, b = await obs.observe(target("a", "b"), NOW)
    assert a.status == SampleStatus.invalid and "bad_data" in a.error
    assert b.status == SampleStatus.ok
    await obs.aclose()


async def test_prometheus_down_retries_then_reports_the_source_unavailable(fake_prom):
    fake_prom.down = True
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    obs = PrometheusObserver(fake_prom.url, retries=2, sleep=sleep)
    with pytest.raises(TemporaryError, match="503"):
        await obs.observe(target("a"), NOW)
    assert len(fake_prom.queries) == 0 and len(slept) == 2  # 3 attempts, 2 backoffs
    await obs.aclose()


async def test_prometheus_garbage_and_unreachable_are_temporary(fake_prom):
    fake_prom.garbage = True
    obs = PrometheusObserver(fake_prom.url, retries=0)
    with pytest.raises(TemporaryError, match="non-JSON"):
        await obs.observe(target("a"), NOW)
    await obs.aclose()
    dead = PrometheusObserver("http://127.0.0.1:9", retries=1, sleep=no_sleep, timeout=2)
    with pytest.raises(TemporaryError, match="unreachable"):
        await dead.observe(target("a"), NOW)
    await dead.aclose()


async def test_prometheus_slow_answer_times_out(fake_prom):
    fake_prom.series["q_a"] = 1.0
    fake_prom.delay = 0.5
    obs = PrometheusObserver(fake_prom.url, retries=0, timeout=0.1)
    with pytest.raises(TemporaryError, match="timed out"):
        await obs.observe(target("a"), NOW)
    await obs.aclose()


@pytest.mark.parametrize("auth", ["bearer", "basic"])
async def test_prometheus_auth(auth):
    fake = FakePrometheus(bearer="tok3n") if auth == "bearer" else FakePrometheus(basic=("ops", "pw"))
    fake.series["q_a"] = 2.0
    with fake.serve() as url:
        wrong = PrometheusObserver(url, retries=0)
        with pytest.raises(PermanentError, match="refused the credentials"):
            await wrong.observe(target("a"), NOW)
        await wrong.aclose()
        kw = {"bearer_token": "tok3n"} if auth == "bearer" else {"username": "ops", "password": "pw"}
        right = PrometheusObserver(url, retries=0, **kw)
        (s,) = await right.observe(target("a"), NOW)
        assert s.value == 2.0
        assert "tok3n" not in repr(right) and "pw" not in repr(right)
        await right.aclose()


async def test_prometheus_credentials_in_the_url_authenticate_and_never_show():
    """`EMPIRE_PROMETHEUS__URL=http://user:PASS@host` logs in with basic auth, and every message
    (they reach the log, the journal and /status) names the source with the password masked."""
    fake = FakePrometheus(basic=("ops", "UrlPw42"))
    fake.series["q_a"] = 2.0
    with fake.serve() as url:
        obs = PrometheusObserver(url.replace("://", "://ops:UrlPw42@"), retries=0)
        (s,) = await obs.observe(target("a"), NOW)
        assert s.value == 2.0
        fake.down = True
        with pytest.raises(TemporaryError) as down:
            await obs.observe(target("a"), NOW)
        await obs.aclose()
    dead = PrometheusObserver(url.replace("://", "://ops:UrlPw42@"), retries=0, timeout=2)
    with pytest.raises(TemporaryError) as unreachable:
        await dead.observe(target("a"), NOW)
    await dead.aclose()
    assert str(down.value) == f"prometheus {url.replace('://', '://ops:***@')} answered 503"
    assert "unreachable" in str(unreachable.value)
    for text in (str(down.value), str(unreachable.value), repr(obs), obs.url):
        assert "UrlPw42" not in text


async def test_prometheus_history_query_range(fake_prom):
    fake_prom.series["q"] = lambda t: t % 100
    obs = PrometheusObserver(fake_prom.url, retries=0)
    pts = await obs.history("q", NOW, NOW + timedelta(seconds=60), 15)
    assert [p[0] for p in pts] == [NOW + timedelta(seconds=15 * i) for i in range(5)]
    assert pts[0][1] == NOW.timestamp() % 100
    await obs.aclose()


async def test_replay_follows_the_clock_and_reports_staleness_and_outages(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text(
        "timestamp,target,signal,value\n"
        "2026-03-01T12:00:00Z,gen,a,1\n2026-03-01T12:01:00Z,gen,a,2\n2026-03-01T12:02:00Z,gen,a,\n"
        "2026-03-01T12:05:00Z,gen,@outage,1\n2026-03-01T12:06:00Z,gen,@outage,0\n"
    )
    obs = ReplayObserver.from_csv(trace)
    (s,) = await obs.observe(target("a"), NOW - timedelta(seconds=1))
    assert s.status == SampleStatus.missing
    (s,) = await obs.observe(target("a"), NOW + timedelta(seconds=90))
    assert (s.value, s.staleness) == (2.0, 30.0)
    (s,) = await obs.observe(target("a"), NOW + timedelta(seconds=150))
    assert s.status == SampleStatus.missing  # a recorded failed scrape
    with pytest.raises(TemporaryError, match="outage"):
        await obs.observe(target("a"), NOW + timedelta(minutes=5, seconds=30))
    (s,) = await obs.observe(target("a"), NOW + timedelta(minutes=7))
    assert s.status == SampleStatus.missing
    assert await obs.history("gen/a", NOW, NOW + timedelta(minutes=10), 60) == [
        (NOW, 1.0), (NOW + timedelta(minutes=1), 2.0)
    ]  # fmt: skip


async def test_replay_rejects_a_malformed_trace(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,value\n1,2\n")
    with pytest.raises(PermanentError, match="columns"):
        ReplayObserver.from_csv(bad)
    bad.write_text("timestamp,signal,value\nyesterday,a,1\n")
    with pytest.raises(PermanentError, match=r"bad.csv:2"):
        ReplayObserver.from_csv(bad)
    with pytest.raises(PermanentError, match="/dev/zero: line 1 is longer than"):  # read with the CSV limits
        ReplayObserver.from_csv("/dev/zero")


async def test_no_source_says_what_to_configure():
    with pytest.raises(TemporaryError, match="EMPIRE_PROMETHEUS__URL"):
        await NoSource().observe(target("a"), NOW)
