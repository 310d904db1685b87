"""Retry classification, exponential backoff with jitter, Retry-After, dead-letter. PURE."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from empire.agent.httpretry import parse_retry_after
from empire.agent.pools.backoff import Verdict, backoff_delay, decide_retry
from empire.agent.pools.errors import (
    AuthFailed,
    BadRequest,
    ConnectionFailed,
    ErrorClass,
    ProviderTimeout,
    RateLimited,
    ServerError,
    error_class_of,
    error_from_exception,
    error_from_status,
)
from empire.errors import PermanentError, TemporaryError
from empire.policies.generation import RetryPolicy

POLICY = RetryPolicy(max_attempts=4, backoff_base=timedelta(seconds=1), backoff_max=timedelta(seconds=30))


@pytest.mark.parametrize(
    ("status", "cls", "temporary"),
    [
        (429, RateLimited, True), (500, ServerError, True), (502, ServerError, True), (503, ServerError, True),
        (408, ProviderTimeout, True), (400, BadRequest, False), (422, BadRequest, False),
        (401, AuthFailed, False), (403, AuthFailed, False), (404, BadRequest, False),
    ],
)  # fmt: skip
def test_status_codes_are_classified(status: int, cls: type, temporary: bool) -> None:
    err = error_from_status(status, "p/a submit", retry_after=3.0 if temporary else None)
    assert isinstance(err, cls)
    assert isinstance(err, TemporaryError if temporary else PermanentError)


def test_transport_errors_are_temporary() -> None:
    assert isinstance(error_from_exception(httpx.ConnectTimeout("x"), "w"), ProviderTimeout)
    assert isinstance(error_from_exception(httpx.ConnectError("x"), "w"), ConnectionFailed)
    assert isinstance(error_from_exception(ConnectionResetError(), "w"), ConnectionFailed)
    assert error_class_of(ValueError("bug")) is ErrorClass.unknown


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after(
        "Wed, 21 Oct 2015 07:28:00 GMT", datetime.fromtimestamp(1445412470.0, UTC)
    ) == pytest.approx(10.0)
    assert parse_retry_after("soon") is None


def test_backoff_is_exponential_capped_and_jittered() -> None:
    rng = random.Random(3)
    assert {backoff_delay(1, POLICY, rng) for _ in range(50)} == {0.0}  # the breaker protects the provider
    for attempt, ceiling in ((2, 1.0), (3, 2.0), (4, 4.0), (7, 30.0), (20, 30.0)):
        delays = [backoff_delay(attempt, POLICY, rng) for _ in range(300)]
        assert min(delays) >= 0.0 and max(delays) <= ceiling
        assert max(delays) > 0.7 * ceiling  # full jitter spreads over the whole range
        assert len({round(d, 6) for d in delays}) > 250  # not synchronised


def test_retry_after_is_a_floor() -> None:
    rng = random.Random(1)
    assert all(backoff_delay(1, POLICY, rng, retry_after=12.0) >= 12.0 for _ in range(50))
    assert backoff_delay(1, POLICY, rng, retry_after=3600.0) == 30.0  # but never past backoff_max


def test_decisions() -> None:
    rng = random.Random(0)
    assert decide_retry(ErrorClass.rate_limited, 3, POLICY, rng).verdict is Verdict.reroute
    assert decide_retry(ErrorClass.auth, 3, POLICY, rng).verdict is Verdict.reroute
    d = decide_retry(ErrorClass.bad_request, 0, POLICY, rng)
    assert (d.verdict, d.attempts) == (Verdict.dead, 1)
    d = decide_retry(ErrorClass.server_error, 1, POLICY, rng, retry_after=5.0)
    assert (d.verdict, d.attempts) == (Verdict.retry, 2) and d.delay >= 5.0
    d = decide_retry(ErrorClass.timeout, 3, POLICY, rng)  # the 4th failure of max 4
    assert (d.verdict, d.attempts) == (Verdict.dead, 4)
