"""A fake Kubernetes API server (apps/v1 Deployments and StatefulSets, their scale subresource).

Served over real HTTP (`with FakeKubernetes().serve() as url:`). It keeps resourceVersions and
answers a merge PATCH whose resourceVersion is outdated with 409, like the real API server.
Faults are scripted: `fail_next(503, 409, retry_after=...)` answers the next requests with those
codes; `forbid("patch")` answers that verb with 403; `token` requires a bearer token (401).
`requests` logs (method, path) of every call, `patches` the replicas written; `before_patch`
simulates a concurrent writer. `write_kubeconfig(path, url, token)` writes the kubeconfig that
points `empire run` at it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fakes.server import serve_in_thread

__all__ = ["FakeKubernetes", "Workload", "write_kubeconfig"]

KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet"}


def write_kubeconfig(path: Path, server: str, token: str) -> Path:
    """A kubeconfig whose one context reaches `server` with a bearer `token`."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "current-context": "t",
        "contexts": [{"name": "t", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": server}}], "users": [{"name": "u", "user": {"token": token}}],
    }))  # fmt: skip
    return path


@dataclass
class Workload:
    replicas: int
    ready: int | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: int = 1


def _status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason,
            "code": code}  # fmt: skip
    return JSONResponse(body, code)


class FakeKubernetes:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.workloads: dict[tuple[str, str, str], Workload] = {}
        self.requests: list[tuple[str, str]] = []
        self.patches: list[tuple[str, int]] = []
        self.forbidden: set[str] = set()
        self._faults: list[tuple[int, float | None]] = []
        self.before_patch: Any = None  # callable(name) run just before a PATCH is applied (races)
        self._lock = threading.Lock()
        self.app = Starlette(routes=[
            Route("/apis/apps/v1/namespaces/{ns}/{plural}/{name}", self._get, methods=["GET"]),
            Route("/apis/apps/v1/namespaces/{ns}/{plural}/{name}/scale", self._scale, methods=["GET", "PATCH"]),
        ])  # fmt: skip

    # -- test API -----------------------------------------------------------------------------
    def add(
        self, name: str, replicas: int, namespace: str = "default", kind: str = "deployments", **kw: Any
    ) -> Workload:
        wl = Workload(replicas=replicas, **kw)
        self.workloads[(kind, namespace, name)] = wl
        return wl

    def replicas(self, name: str, namespace: str = "default", kind: str = "deployments") -> int:
        return self.workloads[(kind, namespace, name)].replicas

    def set_replicas(self, name: str, replicas: int, namespace: str = "default", kind: str = "deployments") -> None:
        """A change made by someone else (kubectl scale): bumps the resourceVersion."""
        wl = self.workloads[(kind, namespace, name)]
        wl.replicas, wl.resource_version = replicas, wl.resource_version + 1

    def fail_next(self, *codes: int, retry_after: float | None = None) -> None:
        with self._lock:
            self._faults.extend((c, retry_after) for c in codes)

    def forbid(self, verb: str) -> None:
        self.forbidden.add(verb)

    @contextlib.contextmanager
    def serve(self, tls: dict[str, Any] | None = None) -> Iterator[str]:
        with serve_in_thread(self.app, tls=tls) as url:
            yield url

    # -- handlers -------------------------------------------------------------------------------
    def _pre(self, request: Request, verb: str) -> JSONResponse | None:
        self.requests.append((request.method, request.url.path))
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        with self._lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is not None:
            code, retry_after = fault
            resp = _status(code, "Injected", f"injected {code}")
            if retry_after is not None:
                resp.headers["Retry-After"] = f"{retry_after:g}"
            return resp
        if verb in self.forbidden:
            p = request.path_params
            return _status(403, "Forbidden", f'{p["plural"]}.apps "{p["name"]}" is forbidden: User '
                           f'"system:serviceaccount:empire:empire" cannot {verb} resource "{p["plural"]}" '
                           f'in API group "apps" in the namespace "{p["ns"]}"')  # fmt: skip
        return None

    def _find(self, request: Request) -> tuple[tuple[str, str, str], Workload | None]:
        p = request.path_params
        key = (p["plural"], p["ns"], p["name"])
        return key, self.workloads.get(key)

    async def _get(self, request: Request) -> JSONResponse:
        if (err := self._pre(request, "get")) is not None:
            return err
        (plural, ns, name), wl = self._find(request)
        if wl is None or plural not in KINDS:
            return _status(404, "NotFound", f'{plural}.apps "{name}" not found')
        return JSONResponse({
            "apiVersion": "apps/v1", "kind": KINDS[plural],
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(wl.resource_version),
                         "annotations": wl.annotations},
            "spec": {"replicas": wl.replicas},
            "status": {"replicas": wl.replicas, "readyReplicas": wl.replicas if wl.ready is None else wl.ready},
        })  # fmt: skip

    async def _scale(self, request: Request) -> JSONResponse:
        verb = "get" if request.method == "GET" else "patch"
        if (err := self._pre(request, verb)) is not None:
            return err
        (plural, ns, name), wl = self._find(request)
        if wl is None or plural not in KINDS:
            return _status(404, "NotFound", f'{plural}.apps "{name}" not found')
        if request.method == "PATCH":
            if request.headers.get("content-type") != "application/merge-patch+json":
                return _status(415, "UnsupportedMediaType", "expected application/merge-patch+json")
            body = await request.json()
            if self.before_patch is not None:
                self.before_patch(name)
            rv = (body.get("metadata") or {}).get("resourceVersion")
            if rv is not None and rv != str(wl.resource_version):
                return _status(
                    409, "Conflict", "the object has been modified; please apply your changes to the latest version"
                )
            new = int(body["spec"]["replicas"])
            wl.replicas, wl.resource_version = new, wl.resource_version + 1
            self.patches.append((name, new))
        return JSONResponse({
            "apiVersion": "autoscaling/v1", "kind": "Scale",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(wl.resource_version)},
            "spec": {"replicas": wl.replicas}, "status": {"replicas": wl.replicas},
        })  # fmt: skip
