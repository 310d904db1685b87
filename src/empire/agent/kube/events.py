"""Kubernetes Events on the workloads the agent scales, the way HPA posts them.

`kubectl describe deployment web` shows what HPA did (`Normal SuccessfulRescale New size: 5;
reason: cpu resource utilization above target`); an HPA user looks there first, so the agent
posts the same: `SuccessfulRescale` for every scale it applies (with the decision's reasons),
`FailedRescale` (Warning) when a scale fails, `ConflictingAutoscaler` (Warning) when an HPA or a
KEDA ScaledObject already targets the workload.

Why a correlator (client-go's `EventCorrelator`, in small): a flapping target must not flood the
API server nor etcd.

* **Aggregation**: an event identical to one already posted (same object, type, reason, message)
  bumps that Event's `count` and `lastTimestamp` with a PATCH instead of creating a new object
  (a 404 on the PATCH, the Event expired, creates it again).
* **Spam filter**: a token bucket per object (burst 25, one token per 5 minutes, client-go's
  defaults): beyond it events are dropped and counted.

Posting an Event never fails the action it describes: every error is logged and counted in
`empire_kube_events_total{type, result}` (result: posted, aggregated, dropped, failed).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from empire.agent.kube.kubeapi import KubeApi, Rbac
from empire.errors import NotFoundError

__all__ = ["EventMetrics", "EventRecorder", "ObjectRef", "TokenBucket"]

logger = logging.getLogger(__name__)

SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
CACHE_SIZE = 4096


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "empire_kube_events", "Kubernetes Events the agent posted on workloads, by type and result "
            "(posted: a new Event; aggregated: the count of an identical one bumped; dropped: over the "
            "per-object rate limit; failed: the API refused it, the action went on)",
            ["type", "result"], registry=registry,
        )  # fmt: skip


@dataclass(frozen=True)
class ObjectRef:
    """The Event's `involvedObject`: the workload."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None

    def body(self) -> dict[str, Any]:
        out = {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace, "name": self.name}
        return out | ({"uid": self.uid} if self.uid else {})


class TokenBucket:
    """`burst` tokens, one more every `refill` seconds. Time is passed in (seconds, any origin)."""

    def __init__(self, burst: int, refill: float, now: float) -> None:
        self.burst, self.refill = burst, refill
        self.tokens, self.at = float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(float(self.burst), self.tokens + max(0.0, now - self.at) / self.refill)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Posted:
    name: str
    count: int


class EventRecorder:
    def __init__(
        self,
        api: KubeApi,
        metrics: EventMetrics,
        *,
        component: str = "empire",
        instance: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        burst: int = SPAM_BURST,
        refill_seconds: float = SPAM_REFILL_SECONDS,
    ) -> None:
        self.api, self.metrics = api, metrics
        self.component, self.instance = component, instance or component
        self._now = now
        self.burst, self.refill_seconds = burst, refill_seconds
        self._posted: OrderedDict[tuple[str, ...], _Posted] = OrderedDict()
        self._buckets: OrderedDict[tuple[str, ...], TokenBucket] = OrderedDict()
        self._seq = 0

    async def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        await self.record(ref, "Normal", reason, message)

    async def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        await self.record(ref, "Warning", reason, message)

    async def record(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        """Post (or aggregate) one Event; never raises."""
        try:
            result = await self._record(ref, type_, reason, message[:1024])
        except Exception as exc:
            result = "failed"
            logger.warning("could not post the %s event %s on %s %s/%s (the action is not affected): %s",
                           type_, reason, ref.kind, ref.namespace, ref.name, exc)  # fmt: skip
        self.metrics.events.labels(type_, result).inc()

    async def _record(self, ref: ObjectRef, type_: str, reason: str, message: str) -> str:
        now = self._now()
        obj = (ref.api_version, ref.kind, ref.namespace, ref.name)
        bucket = self._buckets.get(obj)
        if bucket is None:
            bucket = self._buckets[obj] = TokenBucket(self.burst, self.refill_seconds, now.timestamp())
            _trim(self._buckets)
        if not bucket.take(now.timestamp()):
            logger.debug("event %s on %s/%s dropped: over the rate limit", reason, ref.namespace, ref.name)
            return "dropped"
        key = (*obj, type_, reason, message)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        seen = self._posted.get(key)
        rbac_patch = Rbac("", "events", "patch", ref.namespace)
        if seen is not None:
            self._posted.move_to_end(key)
            path = f"/api/v1/namespaces/{ref.namespace}/events/{seen.name}"
            try:
                await self.api.request("PATCH", path, rbac_patch, {"count": seen.count + 1, "lastTimestamp": stamp})
                seen.count += 1
                return "aggregated"
            except NotFoundError:
                self._posted.pop(key, None)  # expired (events live an hour by default): post anew
        self._seq += 1
        name = f"{ref.name}.{int(now.timestamp() * 1e9) + self._seq:x}"  # client-go: object name + hex time
        body = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ref.namespace},
            "involvedObject": ref.body(), "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": self.component},
            "reportingComponent": self.component, "reportingInstance": self.instance,
        }  # fmt: skip
        await self.api.request("POST", f"/api/v1/namespaces/{ref.namespace}/events",
                               Rbac("", "events", "create", ref.namespace), body, content_type="application/json")  # fmt: skip
        self._posted[key] = _Posted(name, 1)
        _trim(self._posted)
        return "posted"


def _trim(cache: OrderedDict[Any, Any]) -> None:
    while len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
