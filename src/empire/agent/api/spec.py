"""The versioned API's routes as declarations: one `Endpoint` says method, path, scope, the
pydantic models of its query, body and responses, and its handler. From the same declarations:

* `ApiRoute` (a Starlette `Route`) checks the caller's scope, parses and validates the query and
  the body, calls the handler, and answers with the declared model or a JSON error;
* `openapi_document(routes)` writes the OpenAPI 3.1 document served at `/v1/openapi.json`.

Why declarations and not a framework: the routes already are Starlette's, the bodies pydantic's,
and the write endpoints' screening (`webio.read_json_body`: size, NaN, 5,000-digit integers, NUL)
must stay one implementation. What the document says is what the route checks, because both read
the same models; the test suite sends every route requests generated from the document and checks
every answer against it (tests/integration/test_api_openapi.py).

Areas contribute their endpoints as `ApiRoute`s among their ordinary routes; the daemon's app
finds them by type to write the document, so a new endpoint is documented by being declared.

Errors: every error body is `Error` (`{"error": "...", "details": [{"path", "message"}]}`). A
handler raises `ApiError(status, message)`; `NotFoundError` is 404, `ConfigError` 422 and
`TemporaryError` 503 with Retry-After, whatever raised them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from empire.agent.api.auth import Principal, Scope
from empire.agent.webio import json_error, read_json_body
from empire.errors import ConfigError, NotFoundError, StateDbError, TemporaryError
from empire.logrepeat import log_unless_reported

__all__ = [
    "ApiError",
    "ApiRoute",
    "Call",
    "Endpoint",
    "Error",
    "ErrorDetail",
    "Reply",
    "Strict",
    "api_routes",
    "openapi_document",
    "validation_details",
]

logger = logging.getLogger(__name__)

Method = Literal["GET", "POST", "DELETE"]
MAX_ID = 2**63 - 1  # the largest row id a database column holds


class Strict(BaseModel):
    """Request models: unknown fields are errors, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ErrorDetail(BaseModel):
    path: str
    message: str


class Error(BaseModel):
    error: str
    details: list[ErrorDetail] | None = None


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.details, self.headers = status, message, details, headers


@dataclass(frozen=True)
class Reply:
    status: int
    body: BaseModel
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Call:
    """One request as the handler sees it: parsed, validated, authorized."""

    request: Request
    principal: Principal | None
    params: dict[str, Any]
    query: Any
    body: Any

    @property
    def actor(self) -> str:
        return self.principal.name if self.principal is not None else "anonymous"

    def audit(self, subject: str | None = None, **details: Any) -> None:
        """What the audit row of this write says besides who, what, when and the status."""
        note = _audit_note(self.request)
        if subject is not None:
            note["subject"] = subject
        note.setdefault("details", {}).update(details)

    def audited(self) -> None:
        """The handler wrote its own audit row (in its transaction): the guard writes none."""
        _audit_note(self.request)["done"] = True


def _audit_note(request: Request) -> dict[str, Any]:
    return request.scope.setdefault("state", {}).setdefault("empire.audit", {})


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Endpoint:
    method: Method
    path: str  # Starlette syntax: /v1/jobs/{id:int}
    name: str  # the operationId, and the audit row's action for a write
    summary: str
    handler: Handler
    responses: Mapping[int, tuple[str, type[BaseModel]]]
    scope: Scope | None = Scope.read  # None: open to anyone (the document itself)
    tag: str = ""
    description: str = ""
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: Mapping[str, tuple[bool, str]] = field(default_factory=dict)  # request header -> (required, description)
    params: Mapping[str, str] = field(default_factory=dict)  # path parameter -> description


_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


def validation_details(exc: ValidationError) -> list[dict[str, str]]:
    return [{"path": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False)[:20]]  # fmt: skip


def _invalid(where: str, exc: ValidationError) -> ApiError:
    details = validation_details(exc)
    summary = "; ".join(f"{d['path']}: {d['message']}" for d in details[:3])
    return ApiError(422, f"invalid {where}: {summary}", details)


class ApiRoute(Route):
    """A Starlette route made from an `Endpoint` (the guard in front has set the principal)."""

    def __init__(self, spec: Endpoint, *, max_body_bytes: int = 1_048_576) -> None:
        self.spec, self.max_body_bytes = spec, max_body_bytes
        super().__init__(spec.path, self._serve, methods=[spec.method], name=spec.name)

    async def _serve(self, request: Request) -> Response:
        spec = self.spec
        try:
            principal: Principal | None = request.scope.get("state", {}).get("empire.principal")
            _audit_note(request).setdefault("action", spec.name)
            if spec.scope is not None:
                await _authorize(principal, spec.scope, request)
            if any(isinstance(v, int) and v > MAX_ID for v in request.path_params.values()):
                raise ApiError(404, f"no such object: {request.url.path} (ids are at most {MAX_ID})")
            query = self._parse_query(request)
            body = await self._parse_body(request)
            call = Call(request, principal, dict(request.path_params), query, body)
            reply = await spec.handler(call)
        except ApiError as exc:
            return json_error(exc.status, exc.message, exc.details, exc.headers)
        except NotFoundError as exc:
            return json_error(404, str(exc))
        except ConfigError as exc:
            return json_error(422, str(exc))
        except (TemporaryError, StateDbError) as exc:  # logged once per outage (empire.logrepeat)
            log_unless_reported(logger, exc, "%s %s: %s", spec.method, spec.path, exc)
            return json_error(503, "temporarily unavailable; retry later", headers={"Retry-After": "5"})
        return JSONResponse(reply.body.model_dump(mode="json"), reply.status, headers=dict(reply.headers))

    def _parse_query(self, request: Request) -> Any:
        model = self.spec.query
        if model is None:
            return None
        try:
            return model.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise _invalid("query", exc) from None

    async def _parse_body(self, request: Request) -> Any:
        model = self.spec.body
        if model is None:
            return None
        data = await read_json_body(request, self.max_body_bytes)
        if isinstance(data, JSONResponse):
            raise ApiError(data.status_code, *_error_of(data))
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise _invalid("body", exc) from None


def _error_of(response: JSONResponse) -> tuple[str, list[dict[str, str]] | None]:
    import json

    payload = json.loads(bytes(response.body))
    return payload["error"], payload.get("details")


_VERBS = {"GET": "get", "POST": "create", "DELETE": "delete"}


async def _authorize(principal: Principal | None, required: Scope, request: Request) -> None:
    if principal is None:
        denied = request.scope.get("state", {}).get("empire.denied")
        raise ApiError(401, denied or "authentication required (Authorization: Bearer <token>)",
                       headers={"WWW-Authenticate": 'Bearer realm="empire"'})  # fmt: skip
    path = request.url.path
    if principal.authorize is not None:  # Kubernetes: the API server decides, per path and verb
        allowed = await principal.authorize(path, _VERBS.get(request.method, "get"))
    else:
        allowed = principal.may(required, path)
    if not allowed:
        raise ApiError(403, f"{principal.name} may not {request.method} {path} (needs scope {required.value})")


def api_routes(endpoints: Sequence[Endpoint], max_body_bytes: int = 1_048_576) -> list[BaseRoute]:
    return [ApiRoute(e, max_body_bytes=max_body_bytes) for e in endpoints]


# -- the document ----------------------------------------------------------------------------
def openapi_document(routes: Sequence[BaseRoute], *, title: str, version: str) -> dict[str, Any]:
    """OpenAPI 3.1 for every `ApiRoute` among `routes`."""
    specs = [r.spec for r in routes if isinstance(r, ApiRoute)]
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [(Error, "serialization")]
    for s in specs:
        if s.body is not None:
            models.append((s.body, "validation"))
        models += [(m, "serialization") for _, m in s.responses.values()]
    keys, defs = models_json_schema(list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}")
    paths: dict[str, dict[str, Any]] = {}
    for s in specs:
        path = _PARAM.sub(lambda m: "{" + m.group(1) + "}", s.path)
        paths.setdefault(path, {})[s.method.lower()] = _operation(s, keys)
    bearer = {"type": "http", "scheme": "bearer", "description": "a token from `empire tokens create` (or a "
              "Kubernetes ServiceAccount token when Kubernetes authentication is on)"}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {}), "securitySchemes": {"bearer": bearer}},
    }


def _operation(s: Endpoint, keys: Mapping[Any, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = []
    for name, conv in _PARAM.findall(s.path):
        kind = {"int": {"type": "integer", "minimum": 0}}.get(conv, {"type": "string", "minLength": 1})
        params.append({"name": name, "in": "path", "required": True, "schema": kind,
                       "description": s.params.get(name, "")})  # fmt: skip
    if s.query is not None:
        schema = s.query.model_json_schema()
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            prop = dict(prop)
            description = prop.pop("description", "")
            prop.pop("title", None)
            params.append({"name": name, "in": "query", "required": name in required, "schema": prop,
                           "description": description})  # fmt: skip
    for name, (required, description) in s.headers.items():
        params.append({"name": name, "in": "header", "required": required, "schema": {"type": "string"},
                       "description": description})  # fmt: skip
    error = {"$ref": keys[(Error, "serialization")]["$ref"]}

    def answer(description: str, ref: dict[str, Any]) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": ref}}}

    responses = {str(code): answer(d, {"$ref": keys[(m, "serialization")]["$ref"]})
                 for code, (d, m) in s.responses.items()}  # fmt: skip
    common = {429: "too many requests from this caller (Retry-After says when to try again)",
              503: "the state database is unavailable; retry later"}  # fmt: skip
    if s.scope is not None:
        common |= {401: "no valid bearer token", 403: f"the token lacks scope {s.scope.value}"}
    if s.query is not None or s.body is not None or _PARAM.search(s.path):
        common[422] = "a value in the path, query or body is invalid (each named under details)"
    if s.body is not None:
        common |= {400: "malformed JSON", 413: "body too large", 415: "not application/json"}
    for code, description in common.items():
        responses.setdefault(str(code), answer(description, error))
    op: dict[str, Any] = {"operationId": s.name, "summary": s.summary, "responses": responses}
    if s.tag:
        op["tags"] = [s.tag]
    if s.description:
        op["description"] = s.description
    if params:
        op["parameters"] = params
    if s.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": keys[(s.body, "validation")]["$ref"]}}}}  # fmt: skip
    op["security"] = [{"bearer": [s.scope.value]}] if s.scope is not None else []
    return op
