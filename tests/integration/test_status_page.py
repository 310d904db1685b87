"""The status page on a real daemon (no simulation: no metric source, the dry-run cluster), over its
HTTP app with the real state database: `/` is open and carries no data; `/ui/status` and `/ui/data`
read like `/status`, so with `EMPIRE_HTTP__PROTECT_STATUS` they need a `read` token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from empire.agent.api.auth import Scope, TokenRecord, new_token
from empire.agent.clock import FakeClock
from empire.agent.daemon import build_daemon
from empire.agent.http import build_app
from empire.config.settings import load_settings
from empire.policies.loading import default_policy_path, read_policy_text
from empire.state.tokens import SqlTokenStore

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@asynccontextmanager
async def agent(tmp_path: Path, database_url: str, **http: Any) -> AsyncIterator[Any]:
    policy = yaml.safe_load(read_policy_text(default_policy_path()))
    policy["alerting"]["receivers"] = [{"name": r["name"], "dashboard": {}} for r in policy["alerting"]["receivers"]]
    (tmp_path / "policy.yaml").write_text(yaml.safe_dump(policy))
    s = load_settings(data_dir=tmp_path / "data", database_url=database_url, kubernetes={"mode": "disabled"},
                      http={"port": 0, **http})  # fmt: skip
    daemon = await build_daemon(s, tmp_path / "policy.yaml", clock=FakeClock(NOW))
    try:
        await daemon.loop.start()
        await daemon.loop.tick()
        daemon.app = build_app(daemon.context, daemon.routes)
        yield daemon
    finally:
        await daemon.leader.release()
        for close in reversed(daemon.closers):
            await close()


def client(daemon: Any, tok: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=daemon.app), base_url="http://agent", headers=headers)


async def test_the_page_reads_what_status_reads_and_needs_a_read_token_when_status_does(tmp_path, database_url):
    async with agent(tmp_path, database_url, protect_status=True) as daemon:
        text, token_id, digest = new_token()
        await SqlTokenStore(daemon.db).add(TokenRecord(token_id, "viewer", (Scope.read,), digest, NOW, "test"))
        async with client(daemon) as anon, client(daemon, text) as viewer:
            page = await anon.get("/")
            assert page.status_code == 200 and 'src="ui/page.js"' in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert "http" not in page.text.replace("http-equiv", "")  # nothing loaded from elsewhere
            assert (await anon.get("/ui/page.js")).headers["content-type"].startswith("text/javascript")
            for path in ("/ui/status", "/ui/data", "/status"):
                assert (await anon.get(path)).status_code == 401, path
            live = await viewer.get("/ui/status")
            assert live.status_code == 200
            for section in ("overview", "alerts", "targets", "pools", "tiers", "personas"):
                assert f'data-section="{section}"' in live.text
            assert "reasons: metrics_unavailable" in live.text  # a decision, as `empire explain` prints it
            data = (await viewer.get("/ui/data")).json()
    assert data["status"]["metric_source"] == "none"  # the /status body itself
    assert set(data["targets"]) == {"generator", "api"}
    assert len(data["targets"]["generator"]["history"]) == 1  # one tick, one point
    assert [a["account"] for a in data["pools"]["accounts"]] == ["main-1", "main-2", "voice-1"]
    assert data["pools"]["budget"]["daily"] == 250
    assert [t["tier"] for t in data["tiers"]] == ["hot", "warm", "cold", "archive"]
    assert {p["persona"] for p in data["personas"]} == {"luna-waves", "grit-city"}
    assert data["alerts"] == [] and data["silences"] == []


async def test_without_protection_the_page_data_is_as_open_as_status(tmp_path, database_url):
    async with agent(tmp_path, database_url) as daemon, client(daemon) as anon:
        assert (await anon.get("/status")).status_code == 200
        assert (await anon.get("/ui/status")).status_code == 200
