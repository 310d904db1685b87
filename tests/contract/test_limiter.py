"""The `RateLimiter` port: in-process and Redis implementations, one suite.

Limits are what the providers enforce, so the suite asserts what a provider would see: at most
`burst + rate * t` tokens over any run, waits that point at the next token, at most `limit`
requests in any interval of a sliding window and per window of a fixed one, at most `limit` slots
held at once, and slots that come back by themselves when a holder dies without releasing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from empire.agent.pools.bucket import LocalLimiter
from empire.agent.ports import RateLimiter, Window

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["local", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    if request.param == "local":
        yield LocalLimiter()
        return
    from empire.state.redis import RedisLimiter

    url = request.getfixturevalue("redis_url")
    lim = RedisLimiter(url, prefix=f"test:{uuid.uuid4().hex[:8]}:")
    try:
        yield lim
    finally:
        await lim.aclose()


async def test_protocol(limiter: RateLimiter) -> None:
    assert isinstance(limiter, RateLimiter)


async def test_burst_then_wait_for_the_next_token(limiter: RateLimiter) -> None:
    assert [await limiter.try_acquire("a", 10.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await limiter.try_acquire("a", 10.0, 3)
    assert 0.05 < wait <= 0.1
    assert await limiter.try_acquire("b", 10.0, 3) == 0.0  # keys are independent
    await anyio.sleep(wait + 0.01)
    assert await limiter.try_acquire("a", 10.0, 3) == 0.0


async def test_never_more_than_burst_plus_rate_times_time(limiter: RateLimiter) -> None:
    rate, burst, granted = 50.0, 5, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:
        wait = await limiter.try_acquire("r", rate, burst)
        if wait == 0.0:
            granted += 1
        else:
            await anyio.sleep(wait / 2)
    elapsed = time.monotonic() - t0
    assert granted <= burst + rate * elapsed + 1
    assert granted >= 0.8 * rate * elapsed  # and it does hand out the rate


async def test_slots_limit_and_release(limiter: RateLimiter) -> None:
    assert [await limiter.acquire_slot("s", f"h{i}", 2, 30.0) for i in range(3)] == [True, True, False]
    assert await limiter.acquire_slot("s", "h0", 2, 30.0)  # re-acquiring your own slot is fine
    assert await limiter.slots_in_use("s") == 2
    await limiter.release_slot("s", "h0")
    assert await limiter.acquire_slot("s", "h2", 2, 30.0)
    await limiter.release_slot("s", "nobody")  # harmless


async def test_slots_of_a_dead_holder_expire_unless_renewed(limiter: RateLimiter) -> None:
    assert await limiter.acquire_slot("e", "dead", 2, 0.3)
    assert await limiter.acquire_slot("e", "alive", 2, 0.3)
    assert not await limiter.acquire_slot("e", "new", 2, 0.3)
    for _ in range(3):
        await anyio.sleep(0.15)
        await limiter.renew_slots("e", ["alive"], 0.3)
    assert await limiter.slots_in_use("e") == 1
    assert await limiter.acquire_slot("e", "new", 2, 0.3)
    assert not await limiter.acquire_slot("e", "third", 2, 0.3)


async def test_a_sliding_window_never_admits_more_than_limit_in_any_interval(limiter: RateLimiter) -> None:
    window = Window("sliding", 5, 0.4)
    grants: list[float] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.3:
        wait = await limiter.try_acquire("sw", 1.0, 1.0, window)
        if wait == 0.0:
            grants.append(time.monotonic())
        else:
            assert 0.0 < wait <= 0.4
            await anyio.sleep(wait)
    assert all(b - a >= 0.4 - 0.02 for a, b in zip(grants, grants[5:], strict=False))  # any 0.4 s: <= 5
    assert len(grants) >= 15  # and all of the window is used: 5 at once, then 5 per 0.4 s
    assert grants[4] - grants[0] < 0.1  # the limit at once, not spread over the window


async def test_a_fixed_window_admits_limit_per_wall_clock_window(limiter: RateLimiter) -> None:
    window = Window("fixed", 4, 0.5)
    await anyio.sleep(0.5 - time.time() % 0.5 + 0.05)  # just after a boundary
    assert [await limiter.try_acquire("fw", 1.0, 1.0, window) for _ in range(4)] == [0.0] * 4
    wait = await limiter.try_acquire("fw", 1.0, 1.0, window)
    assert 0.3 < wait <= 0.45  # until the next window, not a token's worth
    await anyio.sleep(wait + 0.01)
    assert [await limiter.try_acquire("fw", 1.0, 1.0, window) for _ in range(5)][-2:] == [
        0.0,
        pytest.approx(0.49, abs=0.05),
    ]
