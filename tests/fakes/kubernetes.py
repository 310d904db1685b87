"""A fake Kubernetes API server: discovery, scalable workloads of any group, HPAs, ScaledObjects, Events.

Served over real HTTP (`with FakeKubernetes().serve() as url:`). It keeps resourceVersions and
answers a merge PATCH whose resourceVersion is outdated with 409, like the real API server.

* **Discovery** (`/api`, `/apis`, `/api/v1`, `/apis/GROUP/VERSION`) lists `RESOURCES`: apps/v1
  Deployments, StatefulSets and ReplicaSets (each with `NAME/scale`), core ConfigMaps (no scale),
  a custom resource `example.com/v1 Stage` with a scale subresource whose replicas live at
  `spec.size` (as a CRD's `specReplicasPath` may say), and `argoproj.io/v1alpha1 Rollout`.
  `add_resource(...)` serves more; `keda=True` serves KEDA's ScaledObjects (absent: 404).
* Workloads: `add(name, replicas, namespace, kind="deployments")` (kind is the plural), read and
  written through `/scale` (autoscaling/v1 Scale).
* Other autoscalers: `add_hpa(name, target_kind, target_name)`, `add_scaled_object(...)`,
  `remove_autoscaler(plural, name)`; listed by `GET .../horizontalpodautoscalers|scaledobjects`.
* Events: POST and merge-PATCH of core/v1 Events; `events` holds them by name.

Faults are scripted: `fail_next(503, 409, retry_after=...)` answers the next requests with those
codes; `forbid("patch")` answers that verb with 403; `token` requires a bearer token (401);
`fail_events(code)` answers Event writes with `code`.
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

__all__ = ["RESOURCES", "FakeKubernetes", "Workload", "write_kubeconfig"]

# (group, version, plural) -> (kind, has a scale subresource, where the replicas are in the object's spec)
RESOURCES: dict[tuple[str, str, str], tuple[str, bool, str]] = {
    ("", "v1", "configmaps"): ("ConfigMap", False, ""),
    ("", "v1", "events"): ("Event", False, ""),
    ("", "v1", "secrets"): ("Secret", False, ""),
    ("apps", "v1", "deployments"): ("Deployment", True, "replicas"),
    ("apps", "v1", "statefulsets"): ("StatefulSet", True, "replicas"),
    ("apps", "v1", "replicasets"): ("ReplicaSet", True, "replicas"),
    ("autoscaling", "v2", "horizontalpodautoscalers"): ("HorizontalPodAutoscaler", False, ""),
    ("example.com", "v1", "stages"): ("Stage", True, "size"),
    ("argoproj.io", "v1alpha1", "rollouts"): ("Rollout", True, "replicas"),
}
KEDA = ("keda.sh", "v1alpha1", "scaledobjects")
AUTOSCALER_KINDS = {"horizontalpodautoscalers": "HorizontalPodAutoscaler", "scaledobjects": "ScaledObject"}


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
    def __init__(self, token: str | None = None, keda: bool = False) -> None:
        self.token = token
        self.resources = dict(RESOURCES)
        if keda:
            self.resources[KEDA] = ("ScaledObject", False, "")
        self.workloads: dict[tuple[str, str, str], Workload] = {}
        self.autoscalers: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, ns, name) -> object
        self.events: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []  # workload and scale calls
        self.discovery_requests: list[str] = []
        self.list_requests: list[str] = []
        self.event_requests: list[tuple[str, str]] = []
        self.patches: list[tuple[str, int]] = []
        self.forbidden: set[str] = set()
        self.event_failure: int | None = None
        self._faults: list[tuple[int, float | None]] = []
        self.before_patch: Any = None  # callable(name) run just before a PATCH is applied (races)
        self._lock = threading.Lock()
        self._seq = 0
        obj = "/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}"
        self.app = Starlette(routes=[
            Route("/api", self._api, methods=["GET"]),
            Route("/apis", self._apis, methods=["GET"]),
            Route("/api/{version}", self._version_core, methods=["GET"]),
            Route("/apis/{group}/{version}", self._version, methods=["GET"]),
            Route("/api/v1/namespaces/{ns}/events", self._event_create, methods=["POST"]),
            Route("/api/v1/namespaces/{ns}/events/{name}", self._event_patch, methods=["PATCH"]),
            Route("/apis/{group}/{version}/namespaces/{ns}/{plural}", self._list, methods=["GET"]),
            Route(obj, self._get, methods=["GET"]),
            Route(obj + "/scale", self._scale, methods=["GET", "PATCH"]),
        ])  # fmt: skip

    # -- test API -----------------------------------------------------------------------------
    def add(
        self, name: str, replicas: int, namespace: str = "default", kind: str = "deployments", **kw: Any
    ) -> Workload:
        wl = Workload(replicas=replicas, **kw)
        self.workloads[(kind, namespace, name)] = wl
        return wl

    def add_resource(self, group: str, version: str, plural: str, kind: str, scalable: bool = True) -> None:
        self.resources[(group, version, plural)] = (kind, scalable, "replicas" if scalable else "")

    def add_hpa(self, name: str, target_kind: str, target_name: str, namespace: str = "default",
                api_version: str = "apps/v1") -> None:  # fmt: skip
        ref = {"apiVersion": api_version, "kind": target_kind, "name": target_name}
        self.autoscalers[("horizontalpodautoscalers", namespace, name)] = {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"scaleTargetRef": ref, "minReplicas": 1, "maxReplicas": 10},
        }  # fmt: skip

    def add_scaled_object(self, name: str, target_name: str, namespace: str = "default",
                          target_kind: str | None = None) -> None:  # fmt: skip
        ref = {"name": target_name} | ({"kind": target_kind} if target_kind else {})  # KEDA defaults to Deployment
        self.autoscalers[("scaledobjects", namespace, name)] = {
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"scaleTargetRef": ref},
        }  # fmt: skip

    def remove_autoscaler(self, plural: str, name: str, namespace: str = "default") -> None:
        del self.autoscalers[(plural, namespace, name)]

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

    def fail_events(self, code: int | None) -> None:
        self.event_failure = code

    @contextlib.contextmanager
    def serve(self, tls: dict[str, Any] | None = None) -> Iterator[str]:
        with serve_in_thread(self.app, tls=tls) as url:
            yield url

    # -- handlers -------------------------------------------------------------------------------
    def _auth(self, request: Request) -> JSONResponse | None:
        if self.token is not None and request.headers.get("authorization") != f"Bearer {self.token}":
            return _status(401, "Unauthorized", "Unauthorized")
        return None

    def _pre(self, request: Request, verb: str) -> JSONResponse | None:
        self.requests.append((request.method, request.url.path))
        if (err := self._auth(request)) is not None:
            return err
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
            return _status(403, "Forbidden", f'{p["plural"]}.{p["group"]} "{p["name"]}" is forbidden: User '
                           f'"system:serviceaccount:empire:empire" cannot {verb} resource "{p["plural"]}" '
                           f'in API group "{p["group"]}" in the namespace "{p["ns"]}"')  # fmt: skip
        return None

    # discovery
    async def _api(self, request: Request) -> JSONResponse:
        self.discovery_requests.append(request.url.path)
        return self._auth(request) or JSONResponse({"kind": "APIVersions", "versions": ["v1"]})

    async def _apis(self, request: Request) -> JSONResponse:
        self.discovery_requests.append(request.url.path)
        groups: dict[str, list[str]] = {}
        for group, version, _ in self.resources:
            if group and version not in groups.setdefault(group, []):
                groups[group].append(version)
        body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
             "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()
        ]}  # fmt: skip
        return self._auth(request) or JSONResponse(body)

    def _resource_list(self, group: str, version: str) -> JSONResponse:
        found = [(plural, spec) for (g, v, plural), spec in self.resources.items() if (g, v) == (group, version)]
        if not found:
            return _status(404, "NotFound", "the server could not find the requested resource")
        items: list[dict[str, Any]] = []
        for plural, (kind, scalable, _) in found:
            items.append({"name": plural, "kind": kind, "namespaced": True,
                          "verbs": ["get", "list", "watch", "create", "patch", "delete"]})  # fmt: skip
            if scalable:
                items.append({"name": f"{plural}/scale", "kind": "Scale", "group": "autoscaling", "version": "v1",
                              "namespaced": True, "verbs": ["get", "patch", "update"]})  # fmt: skip
        gv = f"{group}/{version}" if group else version
        return JSONResponse({"kind": "APIResourceList", "groupVersion": gv, "resources": items})

    async def _version_core(self, request: Request) -> JSONResponse:
        self.discovery_requests.append(request.url.path)
        return self._auth(request) or self._resource_list("", request.path_params["version"])

    async def _version(self, request: Request) -> JSONResponse:
        self.discovery_requests.append(request.url.path)
        p = request.path_params
        return self._auth(request) or self._resource_list(p["group"], p["version"])

    # other autoscalers
    async def _list(self, request: Request) -> JSONResponse:
        self.list_requests.append(request.url.path)
        if (err := self._auth(request)) is not None:
            return err
        p = request.path_params
        if (p["group"], p["version"], p["plural"]) not in self.resources:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if "list" in self.forbidden:
            return _status(403, "Forbidden", f'cannot list resource "{p["plural"]}"')
        items = [o for (plural, ns, _), o in self.autoscalers.items() if (plural, ns) == (p["plural"], p["ns"])]
        return JSONResponse({"kind": f"{AUTOSCALER_KINDS.get(p['plural'], 'Object')}List", "apiVersion": "v1",
                             "metadata": {"resourceVersion": "1"}, "items": items})  # fmt: skip

    # events
    async def _event_create(self, request: Request) -> JSONResponse:
        self.event_requests.append((request.method, request.url.path))
        if (err := self._auth(request)) is not None:
            return err
        if self.event_failure is not None:
            return _status(self.event_failure, "Injected", f"injected {self.event_failure}")
        body = await request.json()
        name = body["metadata"]["name"]
        if name in self.events:
            return _status(409, "AlreadyExists", f'events "{name}" already exists')
        self.events[name] = body
        return JSONResponse(body, 201)

    async def _event_patch(self, request: Request) -> JSONResponse:
        self.event_requests.append((request.method, request.url.path))
        if (err := self._auth(request)) is not None:
            return err
        if self.event_failure is not None:
            return _status(self.event_failure, "Injected", f"injected {self.event_failure}")
        name = request.path_params["name"]
        if name not in self.events:
            return _status(404, "NotFound", f'events "{name}" not found')
        self.events[name].update(await request.json())
        return JSONResponse(self.events[name])

    # workloads
    def _find(self, request: Request) -> tuple[tuple[str, str, str], Workload | None, tuple[str, bool, str] | None]:
        p = request.path_params
        key = (p["plural"], p["ns"], p["name"])
        spec = self.resources.get((p["group"], p["version"], p["plural"]))
        return key, self.workloads.get(key), spec

    async def _get(self, request: Request) -> JSONResponse:
        if (err := self._pre(request, "get")) is not None:
            return err
        (plural, ns, name), wl, spec = self._find(request)
        if wl is None or spec is None:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        p = request.path_params
        kind, _, field_ = spec
        api_version = f"{p['group']}/{p['version']}"
        return JSONResponse({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(wl.resource_version),
                         "uid": f"uid-{plural}-{name}", "annotations": wl.annotations},
            "spec": {field_: wl.replicas},
            "status": {"replicas": wl.replicas, "readyReplicas": wl.replicas if wl.ready is None else wl.ready},
        })  # fmt: skip

    async def _scale(self, request: Request) -> JSONResponse:
        verb = "get" if request.method == "GET" else "patch"
        if (err := self._pre(request, verb)) is not None:
            return err
        (plural, ns, name), wl, spec = self._find(request)
        if wl is None or spec is None or not spec[1]:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
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
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(wl.resource_version),
                         "uid": f"uid-{plural}-{name}"},
            "spec": {"replicas": wl.replicas}, "status": {"replicas": wl.replicas},
        })  # fmt: skip
