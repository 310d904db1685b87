"""`KubernetesScaler`: scale any workload with a `scale` subresource, as HPA does.

The target's kind is resolved through API discovery (`discovery.Discovery`: Deployment,
StatefulSet, ReplicaSet, an Argo Rollout, a custom resource whose CRD declares the scale
subresource), and replicas are read and written only through `/scale` (autoscaling/v1 `Scale`),
so a custom resource whose replicas live elsewhere than `spec.replicas` works as it does for HPA.

It is both the `WorkloadReader` and the `Executor` for `ScaleTo`:

* `workload()`: GET the scale (spec.replicas) and the object itself (status.readyReplicas when it
  has one, the `empire.io/*` annotations), plus the other autoscalers targeting it
  (`conflicts.ConflictChecker`, cached; a failing check never fails the read);
* `execute()`: GET the scale; when `spec.replicas` already equals the desired count the write is
  skipped (`unchanged`), like HPA's "update only if needed"; else PATCH it with a merge patch
  carrying the `resourceVersion` read, so a concurrent change (a human's `kubectl scale`, another
  controller) is a 409 conflict instead of a lost update; a 409 is retried from the GET;
* 429 and 5xx are retried (Retry-After honoured); 403 is a `PermanentError` that spells out the RBAC
  rule to add; 404 names the missing workload (or the missing permission to see it); a kind that
  discovery does not know, or that has no scale subresource, is a `PermanentError` naming it;
* every applied scale posts a `Normal SuccessfulRescale` Event on the workload ("New size: N;
  reason: ..."), a failed one a `Warning FailedRescale`, and a newly seen conflict a `Warning
  ConflictingAutoscaler` (`events.EventRecorder`: aggregated and rate-limited; never fails the action).

`read_back` reads the scale for reconciliation: an intent "took effect" iff spec.replicas equals
the journaled replicas. It never writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio
import httpx

from empire.agent.httpretry import retry
from empire.agent.kube.conflicts import ConflictChecker
from empire.agent.kube.discovery import ApiResource, Discovery
from empire.agent.kube.events import EventMetrics, EventRecorder, ObjectRef
from empire.agent.kube.kubeapi import KubeApi, Rbac
from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.monitor import Monitor
from empire.agent.records import ActionRecord
from empire.agent.types import Action, Outcome, OutcomeStatus, ReadBack, Reason, ScaleTo, WorkloadState
from empire.config.urls import mask_url
from empire.errors import NotFoundError, PermanentError
from empire.policies.scaling import Target

__all__ = ["KubernetesScaler"]

logger = logging.getLogger(__name__)


class KubernetesScaler:
    def __init__(
        self,
        config: ClusterConfig,
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        monitor: Monitor | None = None,
        conflict_check_every: float = 60.0,
        discovery_refresh_after: float = 60.0,
        instance: str | None = None,
        now: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.attempts = attempts
        self._sleep = sleep
        self.api = KubeApi(config, timeout=timeout, transport=transport)
        self.discovery = Discovery(self._get, refresh_after=discovery_refresh_after, monotonic=monotonic)
        self.conflicts = ConflictChecker(self.api, every=conflict_check_every, monotonic=monotonic)
        metrics = (monitor or Monitor()).group(EventMetrics)
        extra = {"now": now} if now is not None else {}
        self.events = EventRecorder(self.api, metrics, instance=instance, **extra)
        self._conflicting: dict[tuple[str, str, str], tuple[str, ...]] = {}

    def __repr__(self) -> str:
        return f"KubernetesScaler({mask_url(self.config.server)!r}, {self.config.source})"

    async def aclose(self) -> None:
        await self.api.aclose()

    async def _get(self, path: str) -> dict[str, Any]:
        return await retry(lambda: self.api.request("GET", path), self.attempts, what=path, sleep=self._sleep)

    async def _resource(self, kind: str, api_version: str | None) -> ApiResource:
        return await self.discovery.resolve(kind, api_version)

    async def _read(self, res: ApiResource, namespace: str, name: str, sub: str = "") -> dict[str, Any]:
        path = res.path(namespace, name, sub)
        rbac = Rbac(res.group, res.plural + (f"/{sub}" if sub else ""), "get", namespace)

        async def get() -> dict[str, Any]:
            try:
                return await self.api.request("GET", path, rbac)
            except NotFoundError as exc:
                raise NotFoundError(f"{exc}: check the target's workload kind/name/namespace") from None

        return await retry(get, self.attempts, what=path, sleep=self._sleep)

    async def workload(self, target: Target) -> WorkloadState:
        wl = target.workload
        res = await self._resource(wl.kind, wl.api_version)
        scale = await self._read(res, wl.namespace, wl.name, "scale")
        obj = await self._read(res, wl.namespace, wl.name)
        meta, status = obj.get("metadata", {}), obj.get("status") or {}
        replicas = (scale.get("spec") or {}).get("replicas", 1)
        ready = status.get("readyReplicas", (scale.get("status") or {}).get("replicas"))
        conflicts = await self._conflicts(res, wl.namespace, wl.name, meta.get("uid"))
        return WorkloadState(
            replicas=replicas, ready_replicas=ready, annotations=dict(meta.get("annotations") or {}),
            resource_version=meta.get("resourceVersion"), conflicts=conflicts,
        )  # fmt: skip

    async def _conflicts(self, res: ApiResource, namespace: str, name: str, uid: str | None) -> tuple[str, ...]:
        try:
            found = await self.conflicts.conflicts(namespace, res.kind, name, res.group)
        except Exception as exc:  # the check is advisory: it never stops reading the workload
            logger.warning("conflict check of %s %s/%s failed: %s", res.kind, namespace, name, exc)
            return self._conflicting.get((res.kind, namespace, name), ())
        key = (res.kind, namespace, name)
        before = self._conflicting.get(key, ())
        self._conflicting[key] = found
        if found and found != before:
            logger.warning("%s %s/%s is also scaled by %s: not scaling it until that is removed",
                           res.kind, namespace, name, ", ".join(found))  # fmt: skip
            ref = ObjectRef(res.api_version, res.kind, namespace, name, uid)
            await self.events.warning(ref, "ConflictingAutoscaler",
                                      f"not scaling: {', '.join(found)} also targets this {res.kind}; "
                                      "remove it or the empire target")  # fmt: skip
        elif before and not found:
            logger.info("%s %s/%s: no other autoscaler targets it any more; scaling resumes", res.kind, namespace,
                        name)  # fmt: skip
        return found

    async def execute(self, action: Action) -> Outcome:
        if not isinstance(action, ScaleTo):
            raise PermanentError(f"KubernetesScaler cannot execute {action.kind!r} actions")
        why = ", ".join(r.value for r in action.reasons) or "unspecified"
        res: ApiResource | None = None
        try:
            res = await self._resource(action.workload_kind, action.workload_api_version)
            outcome, uid = await self._scale(res, action)
        except Exception as exc:
            ref = ObjectRef(res.api_version if res else action.workload_api_version or "",
                            action.workload_kind, action.namespace, action.workload_name)  # fmt: skip
            await self.events.warning(ref, "FailedRescale", f"New size: {action.replicas}; reason: {why}; error: {exc}")
            raise
        if outcome.status == OutcomeStatus.applied:
            ref = ObjectRef(res.api_version, res.kind, action.namespace, action.workload_name, uid)
            await self.events.normal(ref, "SuccessfulRescale", f"New size: {action.replicas}; reason: {why}")
        return outcome

    async def _scale(self, res: ApiResource, action: ScaleTo) -> tuple[Outcome, str | None]:
        path = res.path(action.namespace, action.workload_name, "scale")
        get = Rbac(res.group, f"{res.plural}/scale", "get", action.namespace)
        patch_rbac = Rbac(res.group, f"{res.plural}/scale", "patch", action.namespace)

        async def attempt() -> tuple[Outcome, str | None]:
            scale = await self.api.request("GET", path, get)
            meta = scale.get("metadata") or {}
            have = (scale.get("spec") or {}).get("replicas", 0)
            if have == action.replicas:
                return Outcome(OutcomeStatus.unchanged, Reason.no_change, state={"replicas": have}), meta.get("uid")
            patch: dict[str, Any] = {"spec": {"replicas": action.replicas}}
            if meta.get("resourceVersion"):
                patch["metadata"] = {"resourceVersion": meta["resourceVersion"]}
            done = await self.api.request("PATCH", path, patch_rbac, patch)
            got = (done.get("spec") or {}).get("replicas", action.replicas)
            return Outcome(OutcomeStatus.applied, state={"replicas": got, "previous": have}), meta.get("uid")

        return await retry(attempt, self.attempts, what=f"scale {path}", sleep=self._sleep)

    async def read_back(self, record: ActionRecord) -> ReadBack:
        p = record.params
        res = await self._resource(p.get("workload_kind", "Deployment"), p.get("workload_api_version"))
        try:
            scale = await self._read(res, p["namespace"], p["workload_name"], "scale")
        except NotFoundError as exc:
            return ReadBack(False, {}, f"workload gone: {exc}")
        have = (scale.get("spec") or {}).get("replicas")
        applied = have == p.get("replicas")
        return ReadBack(applied, {"replicas": have}, f"spec.replicas is {have}, intent was {p.get('replicas')}")
