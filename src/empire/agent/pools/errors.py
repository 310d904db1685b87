"""Provider failures, classified by who is at fault and how to retry.

The dispatcher never parses messages or status codes: a provider adapter raises one of these, and
its ``error_class`` (a closed set, also a metric label) decides what happens next::

    TemporaryError(delay)                       retry later; ``delay`` = the peer's Retry-After
    ├── RateLimited        429                  the ACCOUNT rests (cooldown); the job re-routes at once
    ├── ServerError        5xx                  the job backs off; a run of them cools the account
    ├── ProviderTimeout    read/connect timeout the job backs off
    ├── ConnectionFailed   refused, reset, DNS  the job backs off
    └── GenerationFailed   accepted, then failed the job backs off and resubmits under a fresh key
    PermanentError                              retrying the same request cannot help
    ├── AuthFailed         401, 403             the ACCOUNT is dead for a while; the job re-routes
    └── BadRequest         400, 404, 422, ...   the JOB is dead-lettered at once
        └── UnexpectedStatus  a job state the provider's spec does not list (named in the error)

Account-level errors (429, 401/403) are not the job's fault, so they do not use up its attempts.
"""

from __future__ import annotations

from enum import StrEnum

import httpx

from empire.errors import EmpireError, PermanentError, TemporaryError

__all__ = [
    "AuthFailed",
    "BadRequest",
    "ConnectionFailed",
    "ErrorClass",
    "GenerationFailed",
    "ProviderTimeout",
    "RateLimited",
    "ServerError",
    "UnexpectedStatus",
    "error_class_of",
    "error_from_exception",
    "error_from_status",
]


class ErrorClass(StrEnum):
    rate_limited = "rate_limited"
    server_error = "server_error"
    timeout = "timeout"
    connection = "connection"
    generation_failed = "generation_failed"
    auth = "auth"
    bad_request = "bad_request"
    unknown = "unknown"

    @property
    def account_level(self) -> bool:
        """The account, not the job, is at fault: re-route without spending an attempt."""
        return self in (ErrorClass.rate_limited, ErrorClass.auth)


class RateLimited(TemporaryError):
    error_class = ErrorClass.rate_limited


class ServerError(TemporaryError):
    error_class = ErrorClass.server_error


class ProviderTimeout(TemporaryError):
    error_class = ErrorClass.timeout


class ConnectionFailed(TemporaryError):
    error_class = ErrorClass.connection


class GenerationFailed(TemporaryError):
    error_class = ErrorClass.generation_failed


class AuthFailed(PermanentError):
    error_class = ErrorClass.auth


class BadRequest(PermanentError):
    error_class = ErrorClass.bad_request


class UnexpectedStatus(BadRequest):
    """The provider answered with a job state that is in none of the spec's lists: neither waiting
    nor resubmitting is safe (the job may be done under another name), so it is dead-lettered."""


def error_class_of(exc: BaseException) -> ErrorClass:
    """The class of any exception: ours carry it; anything else is `unknown` (treated as temporary)."""
    cls = getattr(exc, "error_class", None)
    if isinstance(cls, ErrorClass):
        return cls
    if isinstance(exc, PermanentError):
        return ErrorClass.bad_request
    return ErrorClass.unknown


def error_from_status(status: int, what: str, retry_after: float | None = None) -> EmpireError:
    """Map an HTTP status onto the tree above. `what` names the call, never the key."""
    msg = f"{what}: HTTP {status}"
    if status == 429:
        return RateLimited(msg, retry_after)
    if status in (401, 403):
        return AuthFailed(msg)
    if status == 408:
        return ProviderTimeout(msg, retry_after)
    if status >= 500:
        return ServerError(msg, retry_after)
    if status == 409:  # a conflicting idempotency key still being processed: try again shortly
        return ServerError(msg, retry_after)
    return BadRequest(msg)


def error_from_exception(exc: BaseException, what: str) -> EmpireError:
    """Map a transport failure (httpx, aiohttp, OS); the message keeps the exception type only."""
    if isinstance(exc, EmpireError):
        return exc
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return ProviderTimeout(f"{what}: timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.TransportError | OSError | ConnectionError):
        return ConnectionFailed(f"{what}: connection failed ({type(exc).__name__})")
    return ServerError(f"{what}: unexpected {type(exc).__name__}")
