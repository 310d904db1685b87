"""ServiceAccount tokens on the API: the API server authenticates them (TokenReview) and RBAC
authorizes each path and verb (SubjectAccessReview, non-resource URLs), against a fake API server
on loopback that answers like the real one; answers are cached; an API server that cannot be
asked is a 503, never a grant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from empire.agent.api.auth import Authenticator, Scope
from empire.agent.api.guard import Gate
from empire.agent.api.kube import KubernetesReviewer
from empire.agent.api.memory import MemoryTokenStore
from empire.agent.api.spec import Call, Endpoint, Reply, Strict, api_routes
from empire.agent.clock import FakeClock
from empire.agent.daemon import build_daemon
from empire.agent.http import AppContext, build_app
from empire.agent.monitor import Monitor
from empire.config.settings import load_settings
from empire.errors import ConfigError
from empire.state.memory import MemoryStateStore
from fakes.server import serve_in_thread

pytestmark = pytest.mark.anyio

USERS = {"sa-token-reader": "system:serviceaccount:music:dashboard", "sa-token-ops": "system:serviceaccount:ops:bot"}
RULES = {  # (user, verb) -> allowed paths: what a ClusterRole with nonResourceURLs would grant
    ("system:serviceaccount:music:dashboard", "get"): {"/v1/jobs", "/metrics"},
    ("system:serviceaccount:ops:bot", "get"): {"/v1/jobs", "/v1/whoami"},
    ("system:serviceaccount:ops:bot", "create"): {"/v1/notes"},
}


class FakeApiServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    def app(self) -> Starlette:
        async def tokenreviews(request: Request) -> JSONResponse:
            body = await request.json()
            self.calls.append(("TokenReview", body))
            if self.down:
                return JSONResponse({"kind": "Status", "code": 503}, 503)
            user = USERS.get(body["spec"]["token"])
            status = {"authenticated": True, "user": {"username": user, "uid": "u-1", "groups": ["system:serviceaccounts"]}} if user else {"authenticated": False}  # fmt: skip
            return JSONResponse({**body, "status": status}, 201)

        async def accessreviews(request: Request) -> JSONResponse:
            body = await request.json()
            self.calls.append(("SubjectAccessReview", body))
            spec = body["spec"]
            attrs = spec["nonResourceAttributes"]
            allowed = attrs["path"] in RULES.get((spec["user"], attrs["verb"]), set())
            return JSONResponse({**body, "status": {"allowed": allowed}}, 201)

        return Starlette(routes=[
            Route("/apis/authentication.k8s.io/v1/tokenreviews", tokenreviews, methods=["POST"]),
            Route("/apis/authorization.k8s.io/v1/subjectaccessreviews", accessreviews, methods=["POST"]),
        ])  # fmt: skip


class Note(Strict):
    text: str


async def _note(call: Call) -> Reply:
    return Reply(201, Note(text=call.body.text))


NOTE = Endpoint("POST", "/v1/notes", "notes.add", "a write", _note, {201: ("ok", Note)}, scope=Scope.write, body=Note)


@pytest.fixture
def api_server() -> Iterator[tuple[FakeApiServer, str]]:
    fake = FakeApiServer()
    with serve_in_thread(fake.app()) as url:
        yield fake, url


async def test_rbac_decides_per_path_and_verb_and_answers_are_cached(api_server) -> None:
    fake, url = api_server
    store, clock = MemoryStateStore(), FakeClock()
    async with httpx.AsyncClient(base_url=url) as kube:
        auth = Authenticator(MemoryTokenStore(), clock.now, external=KubernetesReviewer(kube))
        ctx = AppContext(Monitor(), store=store, gate=Gate(auth, store.audit, clock.now, protected=["/metrics"]))
        app = build_app(ctx, api_routes([NOTE]))

        async def call(token: str, method: str, path: str, **kw: Any) -> int:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://agent",
                                         headers={"Authorization": f"Bearer {token}"}) as c:  # fmt: skip
                return (await c.request(method, path, **kw)).status_code

        assert await call("sa-token-reader", "GET", "/metrics") == 200
        assert await call("sa-token-reader", "GET", "/v1/whoami") == 403  # no rule for that path
        assert await call("sa-token-ops", "GET", "/v1/whoami") == 200
        assert await call("sa-token-reader", "POST", "/v1/notes", json={"text": "x"}) == 403
        assert await call("sa-token-ops", "POST", "/v1/notes", json={"text": "x"}) == 201
        assert await call("nobody", "GET", "/v1/whoami") == 401
        reviews = len(fake.calls)
        for _ in range(5):
            assert await call("sa-token-ops", "GET", "/v1/whoami") == 200
        assert len(fake.calls) == reviews  # cached: no new review
        access = [c[1]["spec"] for c in fake.calls if c[0] == "SubjectAccessReview"]
        assert {"path": "/v1/whoami", "verb": "get"} in [a["nonResourceAttributes"] for a in access]
        assert all(a["groups"] == ["system:serviceaccounts"] and a["uid"] == "u-1" for a in access)
        writes = [(a.actor, a.details["status"]) for a in reversed(await store.recent_audit())]
        assert writes == [("system:serviceaccount:music:dashboard", 403), ("system:serviceaccount:ops:bot", 201)]

        fake.down = True
        assert await call("sa-token-unknown-yet", "GET", "/v1/whoami") == 503  # cannot ask: no guess


async def test_kubernetes_auth_needs_a_cluster(tmp_path: Path) -> None:
    s = load_settings(data_dir=tmp_path, kubernetes={"mode": "disabled"}, http={"kubernetes_auth": True})
    with pytest.raises(ConfigError, match="needs a Kubernetes cluster"):
        await build_daemon(s, clock=FakeClock())
