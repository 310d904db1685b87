"""`KubernetesScaler`: scale Deployments and StatefulSets through the scale subresource.

It is both the `WorkloadReader` (GET the workload: spec.replicas, status.readyReplicas and the
`empire.io/*` annotations) and the `Executor` for `ScaleTo`:

* GET `.../{deployments|statefulsets}/{name}/scale`; when `spec.replicas` already equals the
  desired count the write is skipped (`unchanged`), like HPA's "update only if needed";
* PATCH the scale with a merge patch carrying the `resourceVersion` read, so a concurrent change
  (a human's `kubectl scale`, another controller) is a 409 conflict instead of a lost update; a
  409 is retried from the GET, so the write is based on what is there now;
* 429 and 5xx are retried (Retry-After honoured); 403 is a `PermanentError` that spells out the RBAC
  rule to add; 404 names the missing workload (or the missing permission to see it).

`read_back` reads the scale for reconciliation: an intent "took effect" iff spec.replicas equals
the journaled replicas. It never writes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx

from empire.agent.httpretry import parse_retry_after, retry, transport_error
from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.records import ActionRecord
from empire.agent.types import Action, Outcome, OutcomeStatus, ReadBack, Reason, ScaleTo, WorkloadState
from empire.config.urls import mask_url
from empire.errors import NotFoundError, PermanentError, TemporaryError
from empire.policies.scaling import Target

__all__ = ["KubernetesScaler", "workload_path"]

logger = logging.getLogger(__name__)
PLURAL = {"Deployment": "deployments", "StatefulSet": "statefulsets"}


def workload_path(kind: str, namespace: str, name: str, scale: bool = False) -> str:
    plural = PLURAL.get(kind)
    if plural is None:
        raise PermanentError(f"cannot scale a {kind} (valid: {', '.join(PLURAL)})")
    return f"/apis/apps/v1/namespaces/{namespace}/{plural}/{name}" + ("/scale" if scale else "")


class _Conflict(TemporaryError):
    pass


class KubernetesScaler:
    def __init__(
        self,
        config: ClusterConfig,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.config = config
        self.attempts = attempts
        self._sleep = sleep
        self._client = httpx.AsyncClient(**config.client_options(timeout, transport))

    def __repr__(self) -> str:
        return f"KubernetesScaler({mask_url(self.config.server)!r}, {self.config.source})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, verb: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/merge-patch+json"} if body is not None else {}
        try:
            resp = await self._client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"kubernetes API {self.config.server}") from None
        code = resp.status_code
        if code < 300:
            try:
                return resp.json()
            except ValueError:
                raise TemporaryError(f"kubernetes API answered {code} with a non-JSON body") from None
        message = _status_message(resp)
        if code == 409:
            raise _Conflict(f"conflict on {path}: {message}", delay=0.0)
        if code == 429 or code >= 500:
            raise TemporaryError(f"kubernetes API answered {code} for {path}: {message}",
                                 delay=parse_retry_after(resp.headers.get("Retry-After")))  # fmt: skip
        if code in (401, 403):
            raise PermanentError(f"kubernetes API refused {verb} {path} ({code}): {message}. {_rbac_hint(path, verb)}")
        if code == 404:
            raise NotFoundError(f"{path} not found ({message}): check the target's workload kind/name/namespace")
        raise PermanentError(f"kubernetes API answered {code} for {method} {path}: {message}")

    async def workload(self, target: Target) -> WorkloadState:
        wl = target.workload
        path = workload_path(wl.kind, wl.namespace, wl.name)
        obj = await retry(lambda: self._request("GET", path, "get"), self.attempts, what=path, sleep=self._sleep)
        meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
        return WorkloadState(
            replicas=spec.get("replicas", 1), ready_replicas=status.get("readyReplicas", 0),
            annotations=dict(meta.get("annotations") or {}), resource_version=meta.get("resourceVersion"),
        )  # fmt: skip

    async def execute(self, action: Action) -> Outcome:
        if not isinstance(action, ScaleTo):
            raise PermanentError(f"KubernetesScaler cannot execute {action.kind!r} actions")
        path = workload_path(action.workload_kind, action.namespace, action.workload_name, scale=True)

        async def attempt() -> Outcome:
            scale = await self._request("GET", path, "get")
            have = scale.get("spec", {}).get("replicas", 0)
            if have == action.replicas:
                return Outcome(OutcomeStatus.unchanged, Reason.no_change, state={"replicas": have})
            patch: dict[str, Any] = {"spec": {"replicas": action.replicas}}
            rv = scale.get("metadata", {}).get("resourceVersion")
            if rv:
                patch["metadata"] = {"resourceVersion": rv}
            done = await self._request("PATCH", path, "patch", patch)
            got = done.get("spec", {}).get("replicas", action.replicas)
            return Outcome(OutcomeStatus.applied, state={"replicas": got, "previous": have})

        return await retry(attempt, self.attempts, what=f"scale {path}", sleep=self._sleep)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        p = record.params
        path = workload_path(p.get("workload_kind", "Deployment"), p["namespace"], p["workload_name"], scale=True)
        try:
            scale = await retry(lambda: self._request("GET", path, "get"), self.attempts, what=path, sleep=self._sleep)
        except NotFoundError as exc:
            return ReadBack(False, {}, f"workload gone: {exc}")
        have = scale.get("spec", {}).get("replicas")
        applied = have == p.get("replicas")
        return ReadBack(applied, {"replicas": have}, f"spec.replicas is {have}, intent was {p.get('replicas')}")


def _status_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body.get("reason") or resp.reason_phrase)
    except ValueError:
        return resp.text[:200] or resp.reason_phrase


def _rbac_hint(path: str, verb: str) -> str:
    parts = path.strip("/").split("/")  # apis apps v1 namespaces NS PLURAL NAME [scale]
    namespace, plural = parts[4], parts[5]
    resource = plural + ("/scale" if parts[-1] == "scale" else "")
    return (
        f'The agent\'s service account needs a Role in namespace "{namespace}" with the rule: '
        f'apiGroups: ["apps"], resources: ["{resource}"], verbs: ["{verb}"]'
        + (' (and "get" on it)' if verb == "patch" else "")
    )
