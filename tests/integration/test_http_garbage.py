"""Every HTTP endpoint of the agent, driven with generated garbage (hypothesis): bodies, headers,
query strings, paths, methods. Whatever arrives, the answer is one of the endpoint's documented
statuses (never 500), nothing is logged at ERROR or with a traceback, and nothing is written
half-way: a refused request changes no row but at most its audit row (an authenticated caller's
refused write is audited with its status), an accepted write adds exactly its one audit row.

The daemon is the real one (`build_daemon`: every area's routes, the real state database), its
app driven in-process through ASGI, on SQLite and PostgreSQL. A second property sends raw bytes
to the real server on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from empire.agent.clock import FakeClock
from empire.agent.daemon import build_daemon
from empire.agent.http import build_app
from empire.agent.tiering.inventory import ContentObject
from empire.config.settings import load_settings
from empire.state import tables as t
from empire.state.inventory import SqlInventory

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
TOKEN, CB_TOKEN = "ingest-token-0123456789", "cb-token-0123456789"
EXAMPLES = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

# What each endpoint documents (405: a method it does not serve; 413: any body over the limit;
# 307: Starlette's redirect of a known path written with a trailing slash; 429: too many requests,
# or failed authentications, from one caller: every endpoint but the probes).
ANY = {307, 405, 413, 429}
DOCUMENTED = {
    "metrics": {200} | ANY,
    "healthz": {200, 503} | ANY - {429},
    "readyz": {200, 503} | ANY - {429},
    "status": {200} | ANY,
    "page": {200} | ANY,  # the status page and its live parts (/, /ui/status, /ui/data)
    "alerts": {200, 400} | ANY,
    "access": {200, 400, 401, 404, 413, 415, 422, 503} | ANY,
    "revenue": {200, 400, 401, 404, 413, 415, 422, 503} | ANY,
    "callback": {200, 400, 401, 404, 413, 415, 422, 503} | ANY,
    "elsewhere": {404} | ANY,
}
PATHS = {
    "metrics": "/metrics", "healthz": "/healthz", "readyz": "/readyz", "status": "/status", "page": "/ui/status",
    "alerts": "/alerts",
    "access": "/v1/content/access", "revenue": "/v1/content/revenue", "callback": "/v1/providers/cbp/callback",
}  # fmt: skip
PAGE_PATHS = {"/", "/ui/status", "/ui/data", "/ui/page.js"}

# JSON text that parses but no store can hold, or that no parser should be asked to.
NASTY = ["9" * 5000, "-" + "9" * 400, "1e999", "-1e999", "NaN", "Infinity", '"\\u0000"', '"\\ud800"', '"a\\udfffb"',
         "[" * 3000 + "]" * 3000, '{"a":' * 100 + "1" + "}" * 100, '"' + "x" * 3000 + '"', "1.7e308", "-0", "1e-400",
         '"0001-01-01T00:00:00+01:00"', '"9999-12-31T23:59:59-01:00"', '"2026-06-01T11:00:00Z"', '"2026-06-01"',
         '"2026-06-01T11:00:00"', "true", "null", "[]", "{}"]  # fmt: skip

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)  # fmt: skip
fragment = st.one_of(json_values.map(json.dumps), st.sampled_from(NASTY))


def obj(
    fields: dict[str, st.SearchStrategy[str]], valid: dict[str, st.SearchStrategy[str]] | None = None
) -> st.SearchStrategy[str]:
    """A JSON object's text: either every field from `valid`, or fields missing, garbage or extra."""
    pairs = st.fixed_dictionaries({}, optional={k: v | fragment for k, v in fields.items()})
    extra = st.dictionaries(st.text(max_size=5), fragment, max_size=1)
    messy = st.tuples(pairs, extra).map(lambda p: {**p[0], **p[1]})
    text = (messy if valid is None else st.fixed_dictionaries(valid) | messy).map(
        lambda d: "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}"
    )
    return text


def batch(key: str, item: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    items = st.lists(item, min_size=1, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]")
    return obj({key: items}, {key: items}) | fragment


track = st.sampled_from(['"track-1"', '"track-2"'])
ids = st.sampled_from(['"track-1"', '"nope"', '""', '"' + "x" * 200 + '"']) | fragment
amounts = st.floats(-1e6, 1e6).map(json.dumps) | st.sampled_from(["9e11", "1e12", "3", "0"])
numbers = st.integers(-5, 2_000_000).map(str) | st.floats().map(json.dumps) | amounts
times = st.sampled_from(['"2026-06-01T11:00:00Z"', '"2026-06-01T13:00:00+02:00"', '"2026-06-01T12:04:00Z"'])
modes = st.sampled_from(['"set"', '"add"'])
# fmt: off
BODIES = {
    "access": batch("events", obj({"id": ids, "at": times, "count": numbers},
                                  {"id": track, "at": times, "count": st.integers(1, 1000).map(str)})),
    "revenue": batch("figures", obj({"id": ids, "amount": numbers, "mode": modes | st.just('"mul"')},
                                    {"id": track, "amount": amounts, "mode": modes})),
    "callback": obj({"id": st.sampled_from(['"job-1"', '"job-2"', "1"]) | fragment,
                     "status": st.sampled_from(['"succeeded"', '"failed"']) | fragment, "result": fragment},
                    {"id": st.just('"job-1"'), "status": st.just('"running"'), "result": json_values.map(json.dumps)}),
}
# fmt: on

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)
header_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_!#$%&'*+.^`|~", min_size=1, max_size=12)


@st.composite
def requests(draw: st.DrawFn, family: str) -> dict[str, Any]:
    """One request at `family`'s endpoint (or anywhere, for "elsewhere"). Half are well-formed
    around the garbage (right method, path, token, type and length) so that it reaches the handler."""
    polite = family != "elsewhere" and draw(st.booleans())
    if family == "elsewhere":
        odd = ["/healthz/", "/v1/content/", "/v1/providers//callback", "/v1/providers/sim/callback",
               "/v1/providers/%00/callback", "/alerts/x", "/.."]  # fmt: skip
        path = draw(st.sampled_from(odd) | st.text(max_size=30).map(lambda s: "/" + s))
    else:
        path = PATHS[family] + ("" if polite else draw(st.sampled_from(["", "", "/"])))
    writes = family in BODIES
    if polite:
        method = "POST" if writes else "GET"
    else:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]))
    if writes:
        body = draw(BODIES[family].map(str.encode) | (st.nothing() if polite else st.binary(max_size=200)))
    else:
        body = draw(st.just(b"") | st.binary(max_size=100))
    query = draw(st.just("") | st.sampled_from(["state=all", "state=resolved", "state=nope", "limit=5", "limit=-1",
                                                "limit=" + "9" * 5000, "target=api", "target=%00", "limit=%F0%9F"])
                 | st.text(max_size=30).map(lambda s: quote(s, safe="=&")))  # fmt: skip
    headers: list[tuple[bytes, bytes]] = []
    token = CB_TOKEN if family == "callback" else TOKEN
    if polite:
        auth: str | None = f"Bearer {token}"
        ctype: str | None = "application/json"
        length = "true"
    else:
        auth = draw(st.sampled_from([f"Bearer {token}", "Bearer wrong", "Basic eA==", "", None]) | header_text)
        ctype = draw(st.sampled_from(["application/json", "application/json; charset=utf-8", "text/csv", "", None])
                     | header_text)  # fmt: skip
        length = draw(st.sampled_from(["true", "true", "none", "0", "5", "999999999", "-1", "abc", "9" * 400]))
    if auth is not None:
        headers.append((b"authorization", auth.encode("latin-1")))
    if ctype is not None:
        headers.append((b"content-type", ctype.encode("latin-1")))
    if length == "true":
        headers.append((b"content-length", str(len(body)).encode()))
    elif length != "none":
        headers.append((b"content-length", length.encode()))
    for name, value in draw(st.lists(st.tuples(header_names, header_text), max_size=3)):
        headers.append((name.lower().encode(), value.encode("latin-1")))
    chunks = draw(st.integers(1, 3))
    return {"method": method, "path": path, "query": query.encode("ascii", "replace"), "headers": headers,
            "body": body, "chunks": chunks}  # fmt: skip


async def call(app: Any, req: dict[str, Any]) -> tuple[int, bytes]:
    body, n = req["body"], req["chunks"]
    parts = [body[i * len(body) // n : (i + 1) * len(body) // n] for i in range(n)]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": req["method"], "scheme": "http",
        "path": req["path"], "raw_path": req["path"].encode("utf-8", "surrogateescape"), "root_path": "",
        "query_string": req["query"], "headers": [(b"host", b"agent"), *req["headers"]],
        "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 9464), "state": {},
    }  # fmt: skip
    pending = [{"type": "http.request", "body": p, "more_body": i < n - 1} for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


class Errors(logging.Handler):
    """Every record at ERROR, or with a traceback, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(record)


POLICY: dict[str, Any] = {
    "providers": [{
        "name": "cbp", "kind": "http", "cost_per_job": 0.1,
        "http": {"submit_url": "http://127.0.0.1:9/v1/jobs", "callback_secret": {"env": "CB_TOKEN"}},
        "accounts": [{"name": "k1", "api_key": {"env": "CB_API_KEY"}, "requests_per_minute": 60}],
    }],
    "personas": [{"name": "luna", "genres": ["synthwave"], "providers": ["cbp"]}],
}  # fmt: skip


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[tuple[Any, Any, Any]]:
    """(event loop runner, app, database) of a real daemon that has ticked once."""
    for var in ("EMPIRE_REDIS_URL", "EMPIRE_PROMETHEUS__URL", "EMPIRE_POLICY_FILE", "EMPIRE_CONFIG_FILE",
                "EMPIRE_POLICY_SOURCE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CB_TOKEN", CB_TOKEN)
    monkeypatch.setenv("CB_API_KEY", "cb-api-key")
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    s = load_settings(data_dir=tmp_path / "data", database_url=database_url, kubernetes={"mode": "disabled"},
                      http={"port": 0, "max_body_bytes": 65_536}, ingest_token=TOKEN)  # fmt: skip
    with asyncio.Runner() as runner:
        daemon = runner.run(build_daemon(s, tmp_path / "policy.yaml", clock=FakeClock(NOW)))

        async def prepare() -> None:
            await daemon.loop.start()
            await daemon.loop.tick()
            inv = SqlInventory(daemon.db)
            for oid in ("track-1", "track-2"):
                await inv.register(ContentObject(id=oid, size=10, checksum="sha256:" + "a" * 64, tier="hot",
                                                 location=oid, created_at=NOW - timedelta(days=3),
                                                 tier_since=NOW - timedelta(days=3)))  # fmt: skip
            async with daemon.db.begin() as conn:  # a job in flight on the callback provider
                await conn.execute(insert(t.jobs).values(
                    idempotency_key="k-1", persona="luna", provider="cbp", account="k1", priority=1, state="submitted",
                    attempts=1, not_before=NOW, provider_job_id="job-1", request={}, created_at=NOW, updated_at=NOW,
                ))  # fmt: skip

        runner.run(prepare())
        try:
            yield runner, build_app(daemon.context, daemon.routes), daemon.db
        finally:

            async def close() -> None:
                await daemon.leader.release()
                for closer in reversed(daemon.closers):
                    await closer()

            runner.run(close())


async def snapshot(db: Any) -> tuple[Any, ...]:
    c = t.content_objects.c
    async with db.connect() as conn:
        objects = (await conn.execute(select(c.id, c.access_score, c.revenue, c.last_access_at).order_by(c.id))).all()
        audit = (await conn.execute(select(func.count()).select_from(t.audit))).scalar_one()
        jobs = (await conn.execute(select(t.jobs.c.id, t.jobs.c.result, t.jobs.c.state).order_by(t.jobs.c.id))).all()
    return tuple(map(tuple, objects)), audit, tuple(map(tuple, jobs))


@pytest.mark.slow
@pytest.mark.parametrize("family", list(DOCUMENTED))
def test_garbage_at_every_endpoint_gets_a_documented_answer(agent, family: str) -> None:
    runner, app, db = agent
    errors = Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    seen: set[int] = set()

    @EXAMPLES
    @given(requests(family))
    def check(req: dict[str, Any]) -> None:
        before = runner.run(snapshot(db))
        status, body = runner.run(call(app, req))  # an exception out of the app fails here
        after = runner.run(snapshot(db))
        seen.add(status)
        page = family == "elsewhere" and req["path"] in PAGE_PATHS  # drawn at random: a real page
        assert status in DOCUMENTED["page" if page else family], (status, body[:300])
        assert not errors.records, [r.getMessage()[:300] for r in errors.records]
        if family in BODIES and 400 <= status < 500 and status != 405 and not req["path"].endswith("/"):
            error = json.loads(body)["error"]
            assert isinstance(error, str) and "\n" not in error and TOKEN not in error and CB_TOKEN not in error
        if status != 200 or req["method"] not in ("POST",):
            assert (after[0], after[2]) == (before[0], before[2]), "a refused request changed the database"
            assert after[1] - before[1] <= 1, "a refused request is audited once at most"
        elif family in BODIES:
            assert after[1] == before[1] + 1, "an accepted write is audited exactly once"

    try:
        check()
    finally:
        root.removeHandler(errors)
    if family != "elsewhere":  # the generator got through to the handler, and past it
        assert 200 in seen, seen
    if family in BODIES:
        assert seen & {400, 401, 404, 415, 422}, seen


@pytest.mark.slow
def test_raw_bytes_on_a_real_socket_never_get_a_500() -> None:
    """Whatever bytes a client sends, the server answers 4xx or closes; no traceback is logged."""
    from test_http_limits import LIMITS, app_with, closed_after, serving

    errors = Errors()
    root = logging.getLogger()
    root.addHandler(errors)
    lines = st.sampled_from([b"GET /healthz HTTP/1.1\r\n", b"POST /ingest HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n",
                             b"Content-Length: 5\r\n", b"Content-Length: -1\r\n", b"Transfer-Encoding: chunked\r\n",
                             b"Content-Type: application/json\r\n", b"Expect: 100-continue\r\n", b"0\r\n\r\n",
                             b"GET /healthz HTTP/1.0\r\n", b"GET /\xff HTTP/1.1\r\n", b"Upgrade: websocket\r\n",
                             b"Connection: Upgrade\r\n"]) | st.binary(max_size=40)  # fmt: skip
    try:
        with serving(app_with([]), LIMITS) as port:

            @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
            @given(st.lists(lines, min_size=1, max_size=8))
            def check(parts: list[bytes]) -> None:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    try:
                        s.sendall(b"".join(parts))
                        s.shutdown(socket.SHUT_WR)
                    except OSError:
                        return  # the server closed first: that is an answer too
                    _, got = closed_after(s, 3.0)
                statuses = [line.split(b" ")[1] for line in got.split(b"\r\n") if line.startswith(b"HTTP/1.")]
                assert b"500" not in statuses, got[:300]
                assert not errors.records, [r.getMessage()[:300] for r in errors.records]

            check()
    finally:
        root.removeHandler(errors)
