"""Request helpers shared by the agent's write endpoints (content ingest, provider callbacks).

Every write endpoint must answer bad input the same way: 415 for a body that is not JSON, 413
past the size limit (checked against the declared length *and* while streaming, so a lying or
absent Content-Length cannot push a large body through), 400 for malformed JSON (nested deeper
than the parser goes included) or a client that went away, 422 for JSON that parses but cannot be
stored (a number too large for a float or too long for an int, NaN/Infinity, text with a NUL or an
unpaired surrogate, nesting deeper than `MAX_DEPTH`), named by its path (`events.0.count`), and a
JSON `{"error": ..., "details": [...]}` body a person can read. One implementation, so the
endpoints cannot drift apart.

Why values are screened here and not left to each model: such values pass `json.loads` and fail
later, where the failure is an exception, not an answer: a 5,000-digit integer raises ValueError
in the parser, `1e999` becomes inf (PostgreSQL's JSONB refuses it), a NUL character or a lone
surrogate cannot be encoded for the database.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

__all__ = ["MAX_DEPTH", "json_error", "read_json_body", "tokens_match", "unstorable"]

MAX_DEPTH = 32  # the write endpoints' bodies are 3-4 levels deep; a provider's callback a few more
_MAX_INT_DIGITS = 64  # past this an integer is no count, amount or id of ours


class _LongInt(str):
    """An integer literal too long to convert (Python refuses past 4,300 digits): kept as its text
    so that the screen below can name where it was."""


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
    if declared.isdecimal() and int(declared) > max_body_bytes:
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
        data = json.loads(b"".join(chunks) or b"null", parse_int=_parse_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return json_error(400, f"malformed JSON: {exc}")
    except RecursionError:
        return json_error(400, f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
    problem = unstorable(data)
    if problem is not None:
        path, why = problem
        return json_error(422, f"invalid body: {path}: {why}", [{"path": path, "message": why}])
    return data


def _parse_int(text: str) -> int | str:
    digits = len(text.lstrip("-"))
    return _LongInt(text) if digits > _MAX_INT_DIGITS else int(text)


def unstorable(data: Any) -> tuple[str, str] | None:
    """The first value in parsed JSON that no endpoint can store, as (dotted path, why), or None.

    Iterative (an explicit stack), so a deep document cannot exhaust the interpreter's stack here."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        where = path or "(body)"
        if depth > MAX_DEPTH:
            return where, f"nested deeper than {MAX_DEPTH} levels"
        if isinstance(value, _LongInt):
            return where, f"integer of {len(value.lstrip('-'))} digits (at most {_MAX_INT_DIGITS})"
        if isinstance(value, float) and not math.isfinite(value):
            return where, "number out of range (NaN and infinite values are not accepted)"
        if isinstance(value, str) and (why := _bad_text(value)) is not None:
            return where, why
        if isinstance(value, dict):
            for key in value:
                if (why := _bad_text(key)) is not None:
                    return where, f"key {why}"
            items: list[tuple[Any, Any]] = list(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value))
        else:
            continue
        stack.extend(
            (item, f"{path}.{_short(key)}" if path else _short(key), depth + 1) for key, item in reversed(items)
        )
    return None


def _short(key: object) -> str:
    text = str(key)
    return text if len(text) <= 40 else text[:40] + "..."


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "text contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text contains an unpaired surrogate (not valid Unicode)"
    return None
