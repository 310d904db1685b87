"""HTTP failure classification and bounded retries, shared by the Prometheus and Kubernetes adapters.

Retrying lives in adapters only (the core never retries). A response or transport failure becomes:

    TemporaryError(delay)   429 and 5xx (delay from Retry-After), 409 when the caller says so,
                            timeouts, refused or reset connections, garbage bodies from a proxy
    PermanentError          the rest of 4xx, an untrusted TLS certificate: retrying cannot help

`retry()` tries a coroutine `attempts` times, sleeping the peer's Retry-After (capped) or an
exponential backoff between TemporaryErrors; the last TemporaryError propagates.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import anyio
import httpx

from empire.config.urls import mask_url
from empire.errors import PermanentError, TemporaryError

__all__ = ["parse_retry_after", "retry", "transport_error", "untrusted_certificate"]

logger = logging.getLogger(__name__)
T = TypeVar("T")
MAX_DELAY = 30.0


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds (`7`) or an HTTP date, never
    negative; None when absent or unreadable. `now` (aware) anchors a date; default: the wall clock.
    The one parser for every adapter (Prometheus, Kubernetes, providers, alert receivers)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def untrusted_certificate(exc: BaseException) -> bool:
    """True when a connection failed because the peer's TLS certificate is not trusted (wrong CA,
    wrong host name, expired): a configuration problem that no retry fixes."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def transport_error(exc: httpx.HTTPError, what: str) -> TemporaryError | PermanentError:
    """The classified error; its message goes through `mask_url`, since `what` names the peer by
    its URL and some httpx messages embed the request URL."""
    if untrusted_certificate(exc):
        return PermanentError(mask_url(f"{what}: TLS certificate not trusted ({exc}); check the CA bundle "
                                       "(kubeconfig certificate-authority, or the service-account ca.crt)"))  # fmt: skip
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return TemporaryError(mask_url(f"{what} {kind}: {type(exc).__name__}: {exc}".rstrip(": ")))


async def retry(
    fn: Callable[[], Awaitable[T]],
    attempts: int,
    *,
    what: str,
    backoff: float = 0.2,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    """Call `fn` up to `attempts` times while it raises TemporaryError."""
    for i in range(max(1, attempts)):
        try:
            return await fn()
        except TemporaryError as exc:
            if i + 1 >= attempts:
                raise
            delay = min(MAX_DELAY, exc.delay if exc.delay is not None else backoff * 2**i)
            logger.debug("%s: %s; retry %d/%d in %.2fs", what, exc, i + 1, attempts - 1, delay)
            await sleep(delay)
        except PermanentError:
            raise
    raise AssertionError("unreachable")  # pragma: no cover
