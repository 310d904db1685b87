"""Test harness: a Kubernetes API mock (kmock) that knows EmpireConfig, and the operator running on it.

No cluster is available where empire's tests run, so the operator's handlers are exercised by
kopf's own `KopfRunner` against `kmock`'s in-memory Kubernetes emulator on 127.0.0.1. kmock
records every request, which the tests read to assert status patches and Events, and to check
the RBAC manifests against every call made. Needs the dev extras (`kmock`, `kopf`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from empire.operator.crd import GROUP, KIND, PLURAL, VERSION

__all__ = ["RESOURCE", "kube_api", "operator_running"]

RESOURCE = f"{GROUP}/{VERSION}/{PLURAL}"


def _emulator_class() -> type:
    import kmock

    class Emulator(kmock.KubernetesEmulator):
        """kmock's emulator plus what kopf relies on and a real API server does on every write.

        - `metadata.resourceVersion` changes on each write, and a JSON patch whose `test` of it
          fails is a 422 conflict (kopf uses both to tell fresh watch events from stale ones);
        - `metadata.generation` is 1 on create and grows when a write changes `spec`;
        - `metadata.generateName` works on create (kopf names its Events that way);
        - `uid` and `creationTimestamp` are filled on create when missing.
        """

        _counter = 0

        def _next(self) -> str:
            type(self)._counter += 1
            return str(type(self)._counter)

        def _current(self, request: Any) -> dict[str, Any] | None:
            for (resource, namespace, name), obj in list(self.objects.items()):
                if (resource, namespace, name) == (request.resource, request.namespace, request.name):
                    return None if obj.deleted else dict(obj.raw)
            return None

        async def _handle(self, request: Any) -> Any:
            data = request.data
            if request.resource is not None and request.method == "POST" and isinstance(data, dict):
                meta = data.setdefault("metadata", {})
                if meta.get("generateName") and not meta.get("name"):
                    meta["name"] = f"{meta['generateName']}{self._next()}"
                meta.setdefault("uid", f"uid-{self._next()}")
                meta.setdefault("generation", 1)
                meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
                meta["resourceVersion"] = self._next()
            elif request.resource is not None and request.method in ("PATCH", "PUT") and request.name:
                current = self._current(request)
                if current is not None:
                    cmeta = current.get("metadata") or {}
                    if isinstance(data, list):
                        for op in data:
                            if op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion" and \
                                    op.get("value") != cmeta.get("resourceVersion"):  # fmt: skip
                                raise kmock.KubernetesError(status=422, reason="Invalid",
                                                            message="the object has been modified")  # fmt: skip
                        data.append({"op": "add", "path": "/metadata/resourceVersion", "value": self._next()})
                    elif isinstance(data, dict):
                        meta = data.get("metadata") or {}
                        data["metadata"] = meta
                        meta["resourceVersion"] = self._next()
                        spec_changed = "spec" in data and data["spec"] != current.get("spec")
                        if request.subresource is None and spec_changed and "generation" not in meta:
                            meta["generation"] = int(cmeta.get("generation") or 0) + 1
            return await super()._handle(request)

    return Emulator


@contextlib.asynccontextmanager
async def kube_api() -> AsyncIterator[tuple[Any, str]]:
    """(kmock emulator, base URL): built-in resources plus EmpireConfig and KopfPeering."""
    import kmock

    async with _emulator_class()() as api, kmock.Server(api) as server:
        api.resources.load_bundled()
        api.resources[RESOURCE] = kmock.ResourceInfo(
            kind=KIND, namespaced=True, subresources={"status"},
            verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
        )  # fmt: skip
        api.resources["kopf.dev/v1/kopfpeerings"] = kmock.ResourceInfo(
            kind="KopfPeering", namespaced=True, verbs={"get", "list", "watch", "patch"}
        )
        yield api, str(server.url).rstrip("/")


@contextlib.asynccontextmanager
async def operator_running(config: Any, namespace: str, *extra: str, stop_within: float = 30.0) -> AsyncIterator[Any]:
    """`kopf run` in a thread (kopf's `KopfRunner`) with the EmpireConfig handlers of `config`.

    Asynchronous because the API mock is served by the caller's event loop: the operator's last
    requests on the way out (leaving the peering) must be answered while we wait for it to stop,
    so the wait happens in a worker thread, not on the loop.
    """
    import anyio
    from kopf.testing import KopfRunner

    from empire.operator.handlers import build_registry

    args = ["run", "--namespace", namespace, *(extra or ("--standalone",))]
    runner = KopfRunner(args, registry=build_registry(config), timeout=stop_within)
    runner.__enter__()
    try:
        yield runner
    finally:
        await anyio.to_thread.run_sync(runner.__exit__, None, None, None)
