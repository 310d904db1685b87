"""Token bucket and burst sizing, on a fake clock (time is an argument)."""

from __future__ import annotations

import pytest

from empire.agent.pools.bucket import FixedWindow, SlidingWindow, TokenBucket, effective_burst


def test_bucket_starts_full_then_paces_at_the_rate() -> None:
    b = TokenBucket(rate=2.0, capacity=3)
    assert [b.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert b.take(0.0) == pytest.approx(0.5)  # one token per 0.5 s
    assert b.take(0.25) == pytest.approx(0.25)  # nothing was taken by asking
    assert b.take(0.5) == 0.0
    assert b.take(0.5) == pytest.approx(0.5)


def test_bucket_never_holds_more_than_capacity() -> None:
    b = TokenBucket(rate=10.0, capacity=2)
    b.take(0.0)
    assert b.wait_time(1000.0) == 0.0
    assert [b.take(1000.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(0.1)]


def test_bucket_admits_at_most_rate_times_time_plus_burst() -> None:
    b = TokenBucket(rate=5.0, capacity=4)
    t, admitted = 0.0, 0
    while t < 60.0:
        if b.take(t) == 0.0:
            admitted += 1
        t += 0.013
    assert admitted <= 5.0 * 60.0 + 4
    assert admitted >= 5.0 * 60.0 - 1


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    b = TokenBucket(rate=1.0, capacity=1)
    assert b.take(10.0) == 0.0
    assert b.take(5.0) > 0.0


def test_invalid_bucket() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0.0, capacity=1)


def test_effective_burst_keeps_a_reserve_for_arrival_jitter() -> None:
    assert effective_burst(10.0, None, 0.1) == 9.0  # default burst: 1 s of rate, less 0.1 s of tokens
    assert effective_burst(100.0, 50, 0.1) == 40.0
    assert effective_burst(0.5, None, 0.1) == 1.0  # never below one token


def test_sliding_window_admits_the_limit_at_once_then_as_old_requests_leave() -> None:
    w = SlidingWindow(3, 60.0)
    assert [w.take(t) for t in (0.0, 1.0, 2.0)] == [0.0, 0.0, 0.0]
    assert w.take(30.0) == 30.0  # until the first leaves the window
    assert w.take(60.0) == 0.0 and w.take(60.5) == 0.5
    assert w.take(61.0) == 0.0


def test_fixed_window_resets_at_each_boundary_plus_margin() -> None:
    w = FixedWindow(2, 60.0, margin=0.25)
    assert [w.take(t) for t in (59.0, 59.5)] == [0.0, 0.0]
    assert w.take(59.9) == pytest.approx(0.35)  # the window from 0.25 s to 60.25 s is full
    assert [w.take(t) for t in (60.25, 61.0)] == [0.0, 0.0]
    assert w.take(100.0) == pytest.approx(20.25)
