"""The simulated market's accounting, on a case small enough to compute by hand."""

from __future__ import annotations

import pytest

from empire.agent.pools.market import Market, MarketPersona, Platform, generate_market

FAST = Platform("fast", (0.5, 0.5))  # half in the first week, half in the second, reported at once
SLOW = Platform("slow", (1.0,), lag=2)  # everything in the first week, reported 2 days late


def tiny(hot: list[float] | None = None) -> Market:
    persona = MarketPersona("ada", ("lofi",), "suno", 1.0, {"fast": 0.75, "slow": 0.25}, base=14.0,
                            genre_factor={"lofi": 1.0})  # fmt: skip
    days = 30
    return Market((persona,), (FAST, SLOW), drift={"ada": [1.0] * days}, hot={"ada": hot or [1.0] * days},
                  noise_sigma=0.0, trend_noise=0.0)  # fmt: skip


def test_a_track_is_paid_out_over_weeks_and_reported_late() -> None:
    m = tiny()
    t = m.publish("ada", "lofi", day=1, n=0)
    assert t.lifetime == pytest.approx(14.0)  # no noise: the rate
    # 3 days later: fast paid 3/7 of its first half (14*0.75*0.5*3/7 = 2.25); slow shows 1 day of 7
    # (its 2-day lag ate the rest): 14*0.25*1/7 = 0.5
    assert m.revenue(t, 4, "fast") == pytest.approx(2.25)
    assert m.revenue(t, 4, "slow") == pytest.approx(0.5)
    assert m.revenue(t, 4) == pytest.approx(2.75)
    # one week: fast 5.25 (its first half), slow 5/7 of 3.5 = 2.5
    assert m.revenue(t, 8) == pytest.approx(7.75)
    # after 14 days everything is reported, and no more than the lifetime ever is
    assert m.revenue(t, 15) == pytest.approx(14.0)
    assert m.revenue(t, 29) == pytest.approx(14.0)
    assert m.revenue(t, 1) == 0.0 and m.revenue(t, 0) == 0.0  # nothing before or on publication day
    assert m.tail == 14


def test_a_trend_multiplies_the_rate_and_shows_at_once_in_the_signal() -> None:
    hot = [1.0] * 10 + [2.0] * 10 + [1.0] * 10
    m = tiny(hot)
    assert m.rate("ada", "lofi", 9) == pytest.approx(14.0)
    assert m.rate("ada", "lofi", 10) == pytest.approx(28.0)
    assert m.publish("ada", "lofi", 12, 0).lifetime == pytest.approx(28.0)
    assert m.trend("ada", 10) == pytest.approx(2.0)  # this week over last week
    assert m.trend("ada", 17) == pytest.approx(1.0)  # still hot, but no longer rising
    assert m.trend("ada", 20) == pytest.approx(0.5)


def test_the_same_track_gets_the_same_draw_in_every_run() -> None:
    a, b = generate_market(7, personas=5, days=20), generate_market(7, personas=5, days=20)
    p = a.personas[0]
    assert a.publish(p.name, p.genres[0], 3, 1) == b.publish(p.name, p.genres[0], 3, 1)
    assert a.publish(p.name, p.genres[0], 3, 1) != a.publish(p.name, p.genres[0], 3, 2)
    assert generate_market(8, personas=5, days=20).personas != a.personas
    for q in a.personas:
        assert sum(q.shares.values()) == pytest.approx(1.0) and 2 <= len(q.shares) <= 4
