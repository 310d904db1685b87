"""The OpenAPI document at /v1/openapi.json is valid OpenAPI 3.1, lists every /v1 route of the real
daemon, and is what the routes do: requests generated from the document's own schemas
(valid bodies, queries and path values, plus near misses: `fakes.openapi.values`) get a status the
document lists for the operation, with a body that validates against the schema it gives. The
scenario tests (test_api.py) check every answer against the document the same way."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from empire.agent.api.auth import Scope, TokenRecord, new_token
from empire.agent.api.spec import ApiRoute
from empire.agent.clock import FakeClock
from empire.agent.daemon import build_daemon
from empire.agent.http import build_app
from empire.agent.pools.jobs import NewJob
from empire.config.settings import load_settings
from empire.state.jobs import SqlJobQueue
from empire.state.tokens import SqlTokenStore
from fakes.openapi import Document, values

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
POLICY: dict[str, Any] = {
    "providers": [{"name": "sim", "kind": "simulated", "accounts": [{"name": "k1", "requests_per_minute": 60}]}],
    "personas": [{"name": "luna", "genres": ["lofi"], "providers": ["sim"]}],
}
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
SELF_DOCUMENTED = ("/v1/openapi.json", "/v1/providers/")  # the document itself; providers' callbacks (their format)


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[dict[str, Any]]:
    for var in ("EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE",
                "EMPIRE_POLICY_SOURCE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    s = load_settings(data_dir=tmp_path / "data", database_url=database_url, kubernetes={"mode": "disabled"},
                      http={"port": 0, "rate_per_caller": 0})  # fmt: skip
    with asyncio.Runner() as runner:
        daemon = runner.run(build_daemon(s, tmp_path / "policy.yaml", clock=FakeClock(NOW)))
        text, token_id, digest = new_token()

        async def prepare() -> int:
            await daemon.loop.start()
            await daemon.loop.tick()
            await SqlTokenStore(daemon.db).add(TokenRecord(token_id, "ops", (Scope.admin,), digest, NOW, "test"))
            queue = SqlJobQueue(daemon.db)
            await queue.enqueue([NewJob("api/one", "sim", {"prompt": "x", "providers": ["sim"]}, "luna")], NOW)
            job = await queue.get("api/one")
            assert job is not None
            return job.id

        job_id = runner.run(prepare())
        app = build_app(daemon.context, daemon.routes)
        try:
            yield {"runner": runner, "app": app, "token": text, "job_id": job_id}
        finally:

            async def close() -> None:
                await daemon.leader.release()
                for closer in reversed(daemon.closers):
                    await closer()

            runner.run(close())


async def send(app: Any, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent",
                                 headers={"Authorization": f"Bearer {token}"}) as c:  # fmt: skip
        return await c.request(method, path, **kw)


def document(agent: dict[str, Any]) -> dict[str, Any]:
    r = agent["runner"].run(send(agent["app"], "GET", "/v1/openapi.json", agent["token"]))
    assert r.status_code == 200
    return r.json()


def test_the_document_is_openapi_3_1_and_lists_every_v1_route(agent) -> None:
    doc = document(agent)
    validate(doc)  # openapi-spec-validator: the document itself is valid OpenAPI 3.1
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routes = [r for r in agent["app"].routes if r.path.startswith("/v1/") and not r.path.startswith(SELF_DOCUMENTED)]
    assert routes and all(isinstance(r, ApiRoute) for r in routes), [r.path for r in routes]
    served = {(r.spec.method, r.spec.path.replace(":int", "")) for r in routes}
    assert served == documented
    assert len({op["operationId"] for ops in doc["paths"].values() for op in ops.values()}) == len(documented)
    assert {"/v1/jobs", "/v1/jobs/{id}/cancel", "/v1/silences", "/v1/content/access", "/v1/decisions/{target}",
            "/v1/status", "/v1/alerts"} <= set(doc["paths"])  # fmt: skip


def _values(schema: dict[str, Any], doc: dict[str, Any], near: list[Any]) -> st.SearchStrategy[Any]:
    """Values valid for `schema`, or one of the `near` misses."""
    return values(schema, doc["components"]) | st.sampled_from(near)


@st.composite
def requests(draw: st.DrawFn, doc: dict[str, Any], template: str, op: dict[str, Any], job_id: int) -> dict[str, Any]:
    path, query, headers = template, {}, {}
    for p in op.get("parameters", ()):
        schema, name = p["schema"], p["name"]
        if p["in"] == "path":
            if schema["type"] == "integer":
                value = draw(st.sampled_from([job_id, 0, 10**6, 2**63, 10**30]) | st.integers(0, 2**64))
            else:
                value = draw(st.sampled_from(["luna", "track-1", "nope", "%20", "x" * 300])
                             | st.text("abcdef0123-_.~", min_size=1, max_size=20))  # fmt: skip
            path = path.replace("{" + name + "}", str(value))
        elif p["in"] == "query" and (p["required"] or draw(st.booleans())):
            value = draw(_values(schema, doc, ["", "-1", "nope", "9" * 40]))
            query[name] = json_query(value)
        elif p["in"] == "header" and (p["required"] or draw(st.booleans())):
            headers[name] = draw(st.sampled_from(["k1", "k2"])  # the same key again: the same job, or a conflict
                                 | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1,
                                           max_size=30))  # fmt: skip
    body = None
    if "requestBody" in op:
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        near = [{}, [], None, "x", {"prompt": "x"}, {"prompt": "x", "persona": "luna"},  # and some that pass
                {"prompt": "x", "providers": ["sim"], "priority": "low"}, {"events": [{"id": "nope"}]},
                {"figures": [{"id": "nope", "amount": 1}]},
                {"figures": [{"id": "nope", "platform": "youtube", "date": "2026-01-01", "revenue": 1}]},
                {"matchers": ['alertname="a"'], "comment": "c", "duration_seconds": 60}]  # fmt: skip
        body = draw(_values(schema, doc, near))
    return {"path": path, "params": query, "headers": headers, "json": body}


def json_query(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


def exercise(agent: dict[str, Any], doc: dict[str, Any], method: str, template: str, errors: Errors) -> set[int]:
    """Generated requests at one operation; the statuses they got."""
    op, checker, codes = doc["paths"][template][method], Document(doc), set()

    @EXAMPLES
    @given(requests(doc, template, op, agent["job_id"]))
    def check(req: dict[str, Any]) -> None:
        kw = {k: req[k] for k in ("params", "headers")}
        if "requestBody" in op:
            kw["json"] = req["json"]
        r = agent["runner"].run(send(agent["app"], method.upper(), req["path"], agent["token"], **kw))
        codes.add(r.status_code)
        checker.check(method, req["path"], r.status_code, r.content)
        assert not errors.records, [x.getMessage()[:300] for x in errors.records]

    check()
    return codes


@pytest.mark.slow
def test_generated_requests_get_the_documented_answers(agent) -> None:
    doc = document(agent)
    errors = Errors()
    logging.getLogger().addHandler(errors)
    try:
        seen = {op["operationId"]: exercise(agent, doc, method, template, errors)
                for template, ops in doc["paths"].items() for method, op in ops.items()}  # fmt: skip
    finally:
        logging.getLogger().removeHandler(errors)
    # the generator got past validation to the handler of every operation
    assert all(codes & {200, 201, 404, 409} for codes in seen.values()), seen
    assert 201 in seen["jobs.submit"] and 201 in seen["silences.add"], seen  # 200 and 409: test_api.py
