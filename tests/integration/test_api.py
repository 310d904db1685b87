"""The versioned API on a real daemon (every area's routes, the real state database): tokens and
scopes, jobs submitted with an idempotency key, silences, content, decisions, the audit trail,
per-caller rate limits and protected read endpoints; and the CLI that manages the tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy import select

from empire.agent.api.auth import Scope, TokenRecord, new_token
from empire.agent.clock import FakeClock
from empire.agent.daemon import build_daemon
from empire.agent.http import build_app
from empire.cli import main
from empire.config.settings import load_settings
from empire.state import tables as t
from empire.state.tokens import SqlTokenStore
from fakes.openapi import Document, conforming

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
POLICY: dict[str, Any] = {
    "providers": [{"name": "sim", "kind": "simulated", "cost_per_job": 0.1,
                   "accounts": [{"name": "k1", "requests_per_minute": 60}]},
                  {"name": "alt", "kind": "simulated", "cost_per_job": 0.2,
                   "accounts": [{"name": "k1", "requests_per_minute": 60}]}],
    "personas": [{"name": "luna", "genres": ["synthwave", "lofi"], "providers": ["sim", "alt"], "priority": "high"}],
}  # fmt: skip


@asynccontextmanager
async def agent(tmp_path: Path, database_url: str, **http: Any) -> AsyncIterator[Any]:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    s = load_settings(data_dir=tmp_path / "data", database_url=database_url, kubernetes={"mode": "disabled"},
                      http={"port": 0, **http}, ingest_token="legacy-ingest-token")  # fmt: skip
    daemon = await build_daemon(s, tmp_path / "policy.yaml", clock=FakeClock(NOW))
    try:
        await daemon.loop.start()
        await daemon.loop.tick()
        daemon.app = build_app(daemon.context, daemon.routes)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=daemon.app), base_url="http://agent") as c:
            daemon.document = Document((await c.get("/v1/openapi.json")).json())
        yield daemon
    finally:
        await daemon.leader.release()
        for close in reversed(daemon.closers):
            await close()


async def token(daemon: Any, name: str, scope: str, **kw: Any) -> str:
    text, token_id, digest = new_token()
    await SqlTokenStore(daemon.db).add(TokenRecord(token_id, name, (Scope(scope),), digest, NOW, "test", **kw))
    return text


def client(daemon: Any, tok: str | None = None, address: str = "10.0.0.1") -> httpx.AsyncClient:
    """A client of the daemon's app whose every /v1 answer must be what the OpenAPI document says."""
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=daemon.app, client=(address, 4000)),
                             base_url="http://agent", headers=headers,
                             event_hooks={"response": [conforming(daemon.document)]})  # fmt: skip


async def audit_rows(daemon: Any) -> list[tuple[str, str, str, Any]]:
    async with daemon.db.connect() as conn:
        rows = (await conn.execute(select(t.audit).order_by(t.audit.c.id))).all()
    return [(r.actor, r.action, r.subject, r.details.get("status")) for r in rows if r.action != "policy_applied"]


async def test_scopes_decide_who_reads_and_who_writes_and_every_write_is_audited(tmp_path, database_url) -> None:
    async with agent(tmp_path, database_url) as daemon:
        reader, writer = await token(daemon, "grafana", "read"), await token(daemon, "ci", "write")
        job = {"prompt": "slow synthwave, rain", "persona": "luna"}
        async with client(daemon) as anon:
            r = await anon.get("/v1/jobs")
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
            assert (await anon.post("/v1/jobs", json=job, headers={"Idempotency-Key": "a"})).status_code == 401
            assert (await anon.get("/v1/openapi.json")).status_code == 200  # the document is open
            assert (await anon.get("/healthz")).status_code == 200
        async with client(daemon, "emp_0123abcd_not-a-real-secret") as forged:
            r = await forged.get("/v1/jobs")
            assert r.status_code == 401 and r.json()["error"] == "invalid bearer token"
        async with client(daemon, reader) as c:
            assert (await c.get("/v1/whoami")).json() == {"name": "grafana", "scopes": ["read"], "via": "token"}
            assert (await c.get("/v1/jobs")).json() == {"jobs": []}
            r = await c.post("/v1/jobs", json=job, headers={"Idempotency-Key": "a"})
            assert r.status_code == 403 and "needs scope write" in r.json()["error"]
            assert (await c.get("/v1/audit")).status_code == 403  # admin only
        async with client(daemon, writer) as c:
            r = await c.post("/v1/jobs", json=job, headers={"Idempotency-Key": "luna-rain-1"})
            assert r.status_code == 201, r.text
            created = r.json()
            assert r.headers["location"] == f"/v1/jobs/{created['id']}"
            assert (created["key"], created["state"], created["provider"], created["priority"]) == (
                "api/luna-rain-1",
                "queued",
                "sim",
                "high",
            )  # the persona's providers and priority
            assert created["request"]["genre"] == "synthwave" and created["request"]["submitted_by"] == "ci"
            again = await c.post("/v1/jobs", json=job, headers={"Idempotency-Key": "luna-rain-1"})
            assert again.status_code == 200 and again.json()["id"] == created["id"]  # a retry: the same job
            other = await c.post(
                "/v1/jobs", json={**job, "prompt": "other"}, headers={"Idempotency-Key": "luna-rain-1"}
            )
            assert other.status_code == 409 and f"job {created['id']}" in other.json()["error"]
            bad = await c.post(
                "/v1/jobs", json={"prompt": "x", "providers": ["nope"]}, headers={"Idempotency-Key": "b"}
            )
            assert bad.status_code == 422 and "'nope' not in the policy" in bad.json()["error"]
            assert (await c.post("/v1/jobs", json=job)).status_code == 422  # no key
            listed = (await c.get("/v1/jobs", params={"key": "luna-rain-1"})).json()["jobs"]
            assert [j["id"] for j in listed] == [created["id"]]
            cancelled = await c.post(f"/v1/jobs/{created['id']}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
            assert (await c.post(f"/v1/jobs/{created['id']}/cancel")).status_code == 409
            assert (await c.post(f"/v1/jobs/{created['id']}/retry")).json()["state"] == "queued"
            assert (await c.get("/v1/jobs/999999")).status_code == 404
            assert (await c.get(f"/v1/jobs/{'9' * 25}")).status_code == 404
            assert (await c.get("/v1/audit")).status_code == 403
        jid = created["id"]
        assert await audit_rows(daemon) == [
            ("grafana", "jobs.submit", "/v1/jobs", 403),
            ("ci", "jobs.submit", f"job/{jid}", 201),
            ("ci", "jobs.submit", f"job/{jid}", 200),
            ("ci", "jobs.submit", f"job/{jid}", 409),
            ("ci", "jobs.submit", "/v1/jobs", 422),
            ("ci", "jobs.submit", "/v1/jobs", 422),
            ("ci", "jobs.cancel", f"job/{jid}", 200),
            ("ci", "jobs.cancel", f"job/{jid}", 409),
            ("ci", "jobs.retry", f"job/{jid}", 200),
        ]  # anonymous writes (401) are not written down; reads never are


async def test_an_unknown_outcome_job_is_resolved_over_http_and_audited(tmp_path, database_url) -> None:
    from sqlalchemy import update

    async with agent(tmp_path, database_url) as daemon:
        writer = await token(daemon, "ops", "write")
        async with client(daemon, writer) as c:
            job = {"prompt": "slow synthwave, rain", "persona": "luna"}
            jid = (await c.post("/v1/jobs", json=job, headers={"Idempotency-Key": "maybe"})).json()["id"]
            early = await c.post(f"/v1/jobs/{jid}/resolve", json={"as": "done"})
            assert early.status_code == 409 and "is queued, not unknown_outcome" in early.json()["error"]
            async with daemon.db.begin() as conn:  # what a crash while submitting to a key-ignoring provider leaves
                await conn.execute(update(t.jobs).where(t.jobs.c.id == jid).values(state="unknown_outcome"))
            assert (await c.get("/v1/jobs", params={"state": "unknown_outcome"})).json()["jobs"][0]["id"] == jid
            bad = await c.post(f"/v1/jobs/{jid}/resolve", json={"as": "maybe"})
            assert bad.status_code == 422
            r = await c.post(f"/v1/jobs/{jid}/resolve", json={"as": "resubmit", "note": "not at the provider"})
            assert r.status_code == 200 and r.json()["state"] == "queued"
        assert [row for row in await audit_rows(daemon) if row[1] == "jobs.resolve"] == [
            ("ops", "jobs.resolve", f"job/{jid}", 409),
            ("ops", "jobs.resolve", f"/v1/jobs/{jid}/resolve", 422),  # refused before the handler
            ("ops", "jobs.resolve", f"job/{jid}", 200),
        ]


async def test_a_token_is_stored_as_a_digest_and_refused_once_revoked_or_expired(tmp_path, database_url) -> None:
    async with agent(tmp_path, database_url) as daemon:
        tok = await token(daemon, "ci", "write")
        old = await token(daemon, "old", "read", expires_at=NOW - timedelta(seconds=1))
        async with daemon.db.connect() as conn:
            stored = json.dumps([list(map(str, r)) for r in (await conn.execute(select(t.api_tokens))).all()])
        assert tok not in stored and tok.split("_", 2)[2] not in stored
        async with client(daemon, old) as c:
            r = await c.get("/v1/jobs")
            assert r.status_code == 401 and r.json()["error"] == "token 'old' is expired"
        async with client(daemon, tok) as c:
            assert (await c.get("/v1/jobs")).status_code == 200
            await SqlTokenStore(daemon.db).revoke("ci", NOW)
            daemon.context.gate.auth.forget()  # another replica's cache lasts 5 s
            r = await c.get("/v1/jobs")
            assert r.status_code == 401 and r.json()["error"] == "token 'ci' is revoked"


async def test_silences_content_decisions_and_status(tmp_path, database_url) -> None:
    async with agent(tmp_path, database_url) as daemon:
        admin = await token(daemon, "ops", "admin")
        async with client(daemon, admin) as c:
            r = await c.post("/v1/silences", json={"matchers": ['alertname="queue-anomaly"'], "comment": "migration",
                                                   "duration_seconds": 3600})  # fmt: skip
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            assert r.json()["createdBy"] == "ops" and r.json()["state"] == "active"
            everything = await c.post("/v1/silences", json={"matchers": ['alertname=~".*"'], "comment": "x",
                                                            "duration_seconds": 60})  # fmt: skip
            assert everything.status_code == 422 and "cannot mute everything" in everything.json()["error"]
            assert [s["id"] for s in (await c.get("/v1/silences")).json()["silences"]] == [sid]
            assert (await c.delete(f"/v1/silences/{sid[:8]}")).json()["state"] == "expired"
            assert (await c.get("/v1/silences")).json() == {"silences": []}
            assert (await c.get("/v1/alerts")).json()["alerts"] == []
            assert (await c.get("/v1/content/nope")).status_code == 404
            status = (await c.get("/v1/status")).json()
            assert status["ticks"] == 1 and "pools" in status
            target = next(iter(status["targets"]), None)
            if target is not None:
                d = (await c.get(f"/v1/decisions/{target}", params={"last": 1})).json()
                assert d["target"] == target and len(d["decisions"]) == 1
            assert (await c.get("/v1/decisions/nope")).status_code == 404
            log = (await c.get("/v1/audit", params={"last": 2})).json()["entries"]
            assert [(e["actor"], e["action"]) for e in log] == [("ops", "silences.expire"), ("ops", "silences.add")]


async def test_the_legacy_ingest_token_reaches_the_ingest_endpoints_only(tmp_path, database_url) -> None:
    async with agent(tmp_path, database_url) as daemon, client(daemon, "legacy-ingest-token") as c:
        r = await c.post("/v1/content/access", json={"events": [{"id": "nope"}]})
        assert r.status_code == 404  # authorized; the object is unknown
        r = await c.post("/v1/jobs", json={"prompt": "x", "persona": "luna"}, headers={"Idempotency-Key": "k"})
        assert r.status_code == 403
        assert (await c.get("/v1/jobs")).status_code == 403


async def test_each_caller_has_its_own_rate_and_guessing_tokens_is_slowed(tmp_path, database_url) -> None:
    async with agent(tmp_path, database_url, rate_per_caller=1.0, rate_burst=3) as daemon:
        busy, calm = await token(daemon, "busy", "read"), await token(daemon, "calm", "read")
        async with client(daemon, busy) as c:
            codes = [(await c.get("/v1/jobs")).status_code for _ in range(5)]
            assert codes == [200, 200, 200, 429, 429]
            r = await c.get("/v1/jobs")
            assert r.headers["retry-after"] == "1" and "slow down" in r.json()["error"]
            assert (await c.get("/healthz")).status_code == 200  # probes are never limited
        async with client(daemon, calm) as c:
            assert (await c.get("/v1/jobs")).status_code == 200
    async with agent(tmp_path, database_url) as daemon:  # the default rate (50/s, bursts of 100)
        async with client(daemon, "emp_0123abcd_guess", address="10.9.9.9") as c:
            codes = [(await c.get("/v1/whoami")).status_code for _ in range(25)]
            # the probes stay open, also written with a slash (a redirect) and a bad token
            assert [(await c.get(p)).status_code for p in ("/healthz", "/healthz/", "/readyz/")] == [200, 307, 307]
        assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}


async def test_metrics_and_status_can_require_a_read_token(tmp_path, database_url) -> None:
    async with agent(tmp_path, database_url, protect_metrics=True, protect_status=True) as daemon:
        reader = await token(daemon, "prometheus", "read")
        async with client(daemon) as c:
            assert (await c.get("/metrics")).status_code == 401
            assert (await c.get("/status")).status_code == 401
            assert (await c.get("/healthz")).status_code == 200 and (await c.get("/readyz")).status_code == 200
        async with client(daemon, "legacy-ingest-token") as c:
            assert (await c.get("/metrics")).status_code == 403
        async with client(daemon, reader) as c:
            assert (await c.get("/metrics")).status_code == 200 and (await c.get("/status")).status_code == 200
    async with agent(tmp_path, database_url) as daemon, client(daemon) as c:
        assert (await c.get("/metrics")).status_code == 200  # open unless protected


def test_cli_creates_lists_and_revokes_tokens_and_submits_jobs(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(POLICY))
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EMPIRE_POLICY_FILE", str(tmp_path / "policy.yaml"))
    for var in ("EMPIRE_DATABASE_URL", "EMPIRE_CONFIG_FILE", "EMPIRE_POLICY_SOURCE"):
        monkeypatch.delenv(var, raising=False)
    assert main(["tokens", "create", "ci", "--scope", "write", "--format", "json"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["token"].startswith("emp_") and created["scope"] == "write"
    assert main(["tokens", "create", "ci", "--scope", "read"]) == 2  # the name is taken
    assert "exists" in capsys.readouterr().err
    assert main(["tokens", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and "write" in listing and created["token"] not in listing
    args = ["jobs", "submit", "--persona", "luna", "--prompt", "lofi rain", "--key", "k-1"]
    assert main(args) == 0 and "queued for sim (key k-1)" in capsys.readouterr().out
    assert main(args) == 0 and "exists already" in capsys.readouterr().out
    assert main([*args[:-3], "other prompt", "--key", "k-1"]) == 2
    assert "different request" in capsys.readouterr().err
    assert main(["jobs", "submit", "--provider", "nope", "--prompt", "x"]) == 2
    capsys.readouterr()
    assert main(["tokens", "revoke", "ci"]) == 0 and main(["tokens", "revoke", "ci"]) == 2
    capsys.readouterr()
    assert main(["audit", "--format", "json"]) == 0
    log = json.loads(capsys.readouterr().out)
    assert [e["action"] for e in log] == ["tokens.revoke", "jobs.submit", "jobs.submit", "tokens.create"]
    assert all(e["actor"].startswith("cli") for e in log)
