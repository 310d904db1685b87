"""Every key of a provider failing at once is the provider's outage, not N broken keys: one
backoff for the provider, one probe at a time, and the first success gives every key back. PURE
(time is an argument)."""

from __future__ import annotations

from empire.agent.pools.accounts import PoolRegistry
from empire.agent.pools.errors import ErrorClass as E
from empire.policies.schema import parse_policy


def registry() -> PoolRegistry:
    accounts = [{"name": a, "requests_per_minute": 600, "max_concurrent": 4} for a in "abcd"]
    policy = parse_policy({"providers": [{"name": "p", "kind": "simulated", "accounts": accounts}]})
    return PoolRegistry(policy.providers)


def blip(reg: PoolRegistry, key: str, now: float) -> None:
    for i in range(3):  # cooldown.server_errors (3) in a row open the breaker
        reg.failed(key, E.server_error, now + i * 0.01, error=f"{key} submit: HTTP 503")


def routable(reg: PoolRegistry, now: float) -> list[tuple[str, int]]:
    (group,) = reg.candidates(["p"], now)
    return [(c.account, c.max_concurrent) for c in group.accounts if c.cooling_until <= now]


def test_all_keys_failing_together_share_one_backoff_and_one_probe() -> None:
    reg = registry()
    reg.failed("p/d", E.auth, 0.0, error="p/d submit: HTTP 401")  # a dead key is no part of it
    blip(reg, "p/a", 0.0)
    blip(reg, "p/b", 0.3)
    assert "p" not in reg.outages  # c still works: two bad keys, no outage
    blip(reg, "p/c", 0.6)
    assert reg.outages == {"p": 0.62}
    assert {round(reg.states[k].open_until, 6) for k in ("p/a", "p/b", "p/c")} == {1.62}  # reopen together
    assert routable(reg, 1.7) == [("a", 1)]  # one probe for the provider, not one per key

    reg.failed("p/a", E.server_error, 1.8)  # the probe fails: the provider waits twice as long
    assert {round(reg.states[k].open_until, 6) for k in ("p/a", "p/b", "p/c")} == {3.8}
    assert routable(reg, 3.0) == [] and routable(reg, 3.9) == [("a", 1)]
    reg.failed("p/a", E.server_error, 4.0)
    assert round(reg.states["p/a"].open_until, 6) == 8.0  # 4 s

    reg.succeeded("p/a", 8.1)  # it answers again: every key gets its probe at once
    assert "p" not in reg.outages
    assert routable(reg, 8.1) == [("a", 4), ("b", 1), ("c", 1)]
    assert reg.states["p/b"].failed_probes == 0


def test_a_key_that_works_while_the_others_fail_is_no_outage() -> None:
    reg = registry()
    for key in ("p/a", "p/b", "p/c"):
        blip(reg, key, 0.0)
    reg.succeeded("p/d", 0.5)
    assert reg.outages == {}
    assert routable(reg, 0.5) == [("d", 4)]
