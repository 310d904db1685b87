"""When waiting for an account cannot help: every key a job may use was rejected (401/403), as
opposed to ordinary cooldowns that pass. Also what a waiting job's row says. PURE (time is an
argument)."""

from __future__ import annotations

from datetime import UTC, datetime

from empire.agent.pools.accounts import PoolRegistry
from empire.agent.pools.errors import ErrorClass as E
from empire.policies.schema import parse_policy

WALL = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def registry() -> PoolRegistry:
    def sim(name: str, accounts: str, **kw: object) -> dict:
        return {"name": name, "kind": "simulated", "fallback": [], **kw,
                "accounts": [{"name": a, "requests_per_minute": 60} for a in accounts]}  # fmt: skip

    policy = parse_policy({"providers": [sim("main", "ab", fallback=["backup"]), sim("backup", "c")]})
    return PoolRegistry(policy.providers)


def fail(reg: PoolRegistry, key: str, cls: E, now: float, **kw: object) -> None:
    st = reg.states[key]
    st.on_failure(cls, now, reg.providers[st.provider].cooldown, error=f"{key} submit: HTTP {kw.pop('status')}", **kw)


ORDER = ["main", "backup"]


def test_every_key_rejected_means_no_account_will_ever_serve() -> None:
    reg = registry()
    fail(reg, "main/a", E.auth, 0.0, status=401)
    fail(reg, "main/b", E.auth, 0.0, status=403)
    assert reg.rejected_keys(ORDER, 1.0) is None  # the fallback's account is still good
    assert reg.rejected_keys(["main"], 1.0) is not None  # a job that may use main only
    fail(reg, "backup/c", E.auth, 0.0, status=401)
    dead = reg.rejected_keys(ORDER, 1.0)
    assert dead is not None and [st.rejected for st in dead] == [
        "main/a submit: HTTP 401", "main/b submit: HTTP 403", "backup/c submit: HTTP 401",
    ]  # fmt: skip
    # once a cooldown is over the account gets its probe: no verdict before that probe answers
    assert reg.rejected_keys(ORDER, 900.0) is None


def test_ordinary_cooldowns_are_waited_for() -> None:
    reg = registry()
    fail(reg, "main/a", E.auth, 0.0, status=401)
    fail(reg, "main/b", E.auth, 0.0, status=401)
    fail(reg, "backup/c", E.rate_limited, 0.0, status=429, retry_after=30.0)
    assert reg.rejected_keys(ORDER, 1.0) is None
    why = reg.wait_reason(ORDER, 1.0, WALL)
    assert why is not None
    msg, cls = why
    assert cls is E.rate_limited  # what it waits for first: the 429 ends in 29 s
    assert msg == ("every account cools down: backup/c submit: HTTP 429 (until 12:00:29Z); "
                   "main/a submit: HTTP 401 (key rejected); main/b submit: HTTP 401 (key rejected)")  # fmt: skip
    assert reg.wait_reason(ORDER, 31.0, WALL) is None  # c is live again: no cooldown wait


def test_drained_accounts_are_waited_for_unless_their_key_was_rejected() -> None:
    reg = registry()
    fail(reg, "main/a", E.auth, 0.0, status=401)
    fail(reg, "main/b", E.auth, 0.0, status=401)
    reg.drained = frozenset({"backup/c"})  # a hold is lifted some day: wait
    assert reg.rejected_keys(ORDER, 1.0) is None
    fail(reg, "backup/c", E.auth, 0.0, status=401)
    assert reg.rejected_keys(ORDER, 1.0) is not None  # drained and rejected: no probe will come
    assert reg.rejected_keys(["backup"], 2000.0) is not None  # not even after its cooldown
    assert reg.rejected_keys(ORDER, 2000.0) is None  # but main's accounts get their probes then


def test_no_account_at_all_is_not_a_rejection() -> None:
    reg = registry()
    assert reg.rejected_keys(["nowhere"], 0.0) is None
    assert reg.all_cooling(["nowhere"], 0.0) is None


def test_breakers_report_cooling_and_rejected_accounts() -> None:
    reg = registry()
    fail(reg, "main/a", E.auth, 0.0, status=401)
    fail(reg, "main/b", E.rate_limited, 0.0, status=429, retry_after=10.0)
    b = reg.breakers(5.0, WALL)
    assert set(b) == {"main/a", "main/b"}
    assert b["main/a"]["state"] == "key_rejected" and b["main/a"]["last_error"] == "main/a submit: HTTP 401"
    assert b["main/b"] == {"state": "cooling", "cause": "rate_limited", "until": "2026-03-01T12:00:05+00:00",
                           "last_error": "main/b submit: HTTP 429"}  # fmt: skip
    assert set(reg.breakers(20.0, WALL)) == {"main/a"}  # its cooldown has ended, its key is still not trusted
