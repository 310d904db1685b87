"""Per-account breaker: cooldown after a 429, a run of 5xx, N failures, a dead key. PURE."""

from __future__ import annotations

from datetime import timedelta

from empire.agent.pools.errors import ErrorClass as E
from empire.agent.pools.health import AccountState, CooldownCause
from empire.policies.generation import CooldownPolicy

POLICY = CooldownPolicy(
    after_rate_limit=timedelta(seconds=30), failures=4, server_errors=3, initial=timedelta(seconds=1),
    duration=timedelta(seconds=60), after_auth_failure=timedelta(minutes=15),
)  # fmt: skip


def test_rate_limit_cools_for_retry_after_else_the_policy() -> None:
    a = AccountState("p", "a")
    assert a.on_failure(E.rate_limited, 100.0, POLICY, retry_after=7.0) is CooldownCause.rate_limited
    assert a.cooling(106.9) and not a.cooling(107.0)
    b = AccountState("p", "b")
    b.on_failure(E.rate_limited, 100.0, POLICY)
    assert b.cooling(129.0) and not b.cooling(130.0)


def test_a_run_of_server_errors_cools_the_account() -> None:
    a = AccountState("p", "a")
    assert a.on_failure(E.server_error, 0.0, POLICY) is None
    assert a.on_failure(E.timeout, 1.0, POLICY) is None
    assert a.on_failure(E.server_error, 2.0, POLICY) is CooldownCause.server_errors
    assert a.cooling(2.9) and not a.cooling(3.0)  # briefly: `initial`, not the full minute


def test_each_failed_probe_doubles_the_cooldown_up_to_duration_and_a_success_resets_it() -> None:
    a = AccountState("p", "a")
    for t in (0.0, 0.1, 0.2):
        a.on_failure(E.server_error, t, POLICY)
    opened, t = [], 1.2
    for _ in range(9):  # the probe after each cooldown fails
        assert a.on_failure(E.server_error, t, POLICY) is CooldownCause.failures
        opened.append(round(a.open_until - t, 6))
        t = a.open_until
    assert opened == [2, 4, 8, 16, 32, 60, 60, 60, 60]
    a.on_success(t)  # a probe succeeds: closed, and the next run of errors starts small again
    for x in (1.0, 1.1, 1.2):
        a.on_failure(E.server_error, t + x, POLICY)
    assert round(a.open_until - (t + 1.2), 6) == 1.0


def test_success_resets_the_run() -> None:
    a = AccountState("p", "a")
    a.on_failure(E.server_error, 0.0, POLICY)
    a.on_failure(E.server_error, 1.0, POLICY)
    a.on_success(2.0)
    assert a.on_failure(E.server_error, 3.0, POLICY) is None
    assert not a.cooling(3.0)


def test_any_failures_in_a_row_cool_it() -> None:
    a = AccountState("p", "a")
    for t in range(3):
        assert a.on_failure(E.connection, float(t), POLICY) is None
    assert a.on_failure(E.generation_failed, 3.0, POLICY) is CooldownCause.failures


def test_dead_key_rests_long_and_bad_requests_do_not_count() -> None:
    a = AccountState("p", "a")
    assert a.on_failure(E.auth, 0.0, POLICY) is CooldownCause.auth
    assert a.cooling(899.0) and not a.cooling(900.0)
    b = AccountState("p", "b")
    for t in range(10):
        assert b.on_failure(E.bad_request, float(t), POLICY) is None
    assert not b.cooling(10.0)


def test_half_open_after_cooldown_one_failure_reopens() -> None:
    a = AccountState("p", "a")
    a.on_failure(E.rate_limited, 0.0, POLICY, retry_after=5.0)
    assert a.on_failure(E.server_error, 6.0, POLICY) is CooldownCause.failures  # probe failed
    assert a.cooling(7.9) and not a.cooling(8.0)  # 2 s: the first failed probe doubles `initial`
    a.on_success(70.0)  # probe succeeded: closed again
    assert a.on_failure(E.server_error, 71.0, POLICY) is None
    assert a.cooldowns == {CooldownCause.rate_limited: 1, CooldownCause.failures: 1}


def test_latency_ewma() -> None:
    a = AccountState("p", "a")
    a.observe_latency(10.0)
    a.observe_latency(20.0)
    assert a.latency_ewma == 12.0


def test_a_rejected_key_stays_rejected_until_it_is_seen_working() -> None:
    a = AccountState("p", "a")
    assert not a.key_rejected
    a.on_failure(E.auth, 0.0, POLICY, error="p/a submit: HTTP 401")
    assert a.key_rejected and a.rejected == "p/a submit: HTTP 401"
    # a late answer to a request sent before the rejection proves nothing
    a.on_failure(E.rate_limited, 1.0, POLICY, retry_after=1.0, error="p/a submit: HTTP 429")
    a.on_failure(E.server_error, 2.0, POLICY)
    assert a.key_rejected and a.last_error == "p/a submit: HTTP 429"
    # the probe after the cooldown is rejected again: still dead, for another cooldown
    a.on_failure(E.auth, 901.0, POLICY)
    assert a.key_rejected and a.cooling(1800.0) and a.rejected == "p/a: key rejected"
    # a probe that got past authentication (any other answer) or a success clears it
    a.on_failure(E.rate_limited, 1801.0, POLICY, retry_after=1.0)
    assert not a.key_rejected
    b = AccountState("p", "b")
    b.on_failure(E.auth, 0.0, POLICY)
    b.on_success(5.0)
    assert not b.key_rejected
    c = AccountState("p", "c")
    c.on_failure(E.auth, 0.0, POLICY)
    c.on_failure(E.bad_request, 900.0, POLICY)  # a 422: the key was accepted
    assert not c.key_rejected


def test_a_run_of_errors_among_many_successes_is_noise_not_a_broken_account() -> None:
    a = AccountState("p", "a")
    for i in range(17):  # a busy key under 10 % of random 503s: three in a row now and then
        a.on_success(i * 0.01)
    for t in (1.0, 1.01, 1.02, 1.03, 1.04):
        assert a.on_failure(E.server_error, t, POLICY) is None  # 5 of the last 20 failed: stays in service
    assert not a.cooling(1.05)
    for t in (2.0, 2.01, 2.02, 2.03, 2.04):  # it keeps failing: half of its last calls now
        cause = a.on_failure(E.server_error, t, POLICY)
    assert cause is CooldownCause.server_errors and a.cooling(2.05)
