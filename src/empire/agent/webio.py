"""Request helpers shared by the agent's write endpoints (content ingest, provider callbacks).

Every write endpoint must answer bad input the same way: 415 for a body that is not JSON, 413
past the size limit (checked against the declared length *and* while streaming, so a lying or
absent Content-Length cannot push a large body through), 400 for malformed JSON or a client that
went away, and a JSON `{"error": ..., "details": [...]}` body a person can read. One
implementation, so the endpoints cannot drift apart.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

__all__ = ["json_error", "read_json_body", "tokens_match"]


def json_error(
    status: int, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return JSONResponse(body, status, headers=headers)


def tokens_match(given: str, expected: str | bytes) -> bool:
    """Constant-time comparison: how long it takes says nothing about how much of a token matched."""
    want = expected if isinstance(expected, bytes) else expected.encode()
    return hmac.compare_digest(given.strip().encode(), want)


async def read_json_body(request: Request, max_body_bytes: int) -> Any | JSONResponse:
    """The parsed JSON body, or the error response to send instead."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return json_error(415, f"expected Content-Type application/json, got {ctype or 'none'}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_body_bytes:
        return json_error(413, f"body larger than {max_body_bytes} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                return json_error(413, f"body larger than {max_body_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        return json_error(400, "client disconnected before the body was complete")
    try:
        return json.loads(b"".join(chunks) or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return json_error(400, f"malformed JSON: {exc}")
