"""What every HTTP receiver shares: classifying failures by how to retry them, without leaking URLs.

    httpx.TimeoutException, httpx.TransportError (refused, reset, DNS)  -> TemporaryError
    an untrusted TLS certificate                                        -> PermanentError
    HTTP 429, 5xx, 408                                                  -> TemporaryError(Retry-After)
    other HTTP 4xx (bad payload, revoked webhook, no permission)        -> PermanentError

The messages name the receiver and the status, never the URL: for Slack the URL is the secret.
"""

from __future__ import annotations

import httpx

from empire.agent.httpretry import parse_retry_after, untrusted_certificate
from empire.errors import PermanentError, TemporaryError

__all__ = ["classify_response", "classify_transport_error"]


def classify_transport_error(what: str, exc: httpx.HTTPError) -> TemporaryError | PermanentError:
    if untrusted_certificate(exc):
        return PermanentError(f"{what}: TLS certificate not trusted")
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "unreachable"
    return TemporaryError(f"{what}: {kind} ({type(exc).__name__})")


def classify_response(what: str, response: httpx.Response) -> None:
    """Raise for a failed response; return for 2xx."""
    code = response.status_code
    if 200 <= code < 300:
        return
    body = response.text[:200].strip().replace("\n", " ") if response.content else ""
    detail = f"{what}: HTTP {code}" + (f": {body}" if body else "")
    if code in (408, 425, 429) or code >= 500:
        raise TemporaryError(detail, parse_retry_after(response.headers.get("retry-after")))
    raise PermanentError(detail)
