"""Another autoscaler on the same workload: an HPA or a KEDA ScaledObject.

Two controllers writing one `spec.replicas` fight: each undoes the other every few seconds. HPA
refuses to share a workload between two HPAs (`AmbiguousSelector`); the agent does the same with
HPAs (autoscaling/v2 `horizontalpodautoscalers`) and KEDA `ScaledObject`s (keda.sh/v1alpha1; KEDA
not installed means none, not an error) whose `spec.scaleTargetRef` names the target's workload:
the target is decided and journaled with reason `conflict` but never scaled until the other
autoscaler is gone.

Why a periodic, cached check: listing them is one or two requests per namespace, not worth a
watch nor one per tick; `every` (default 60 s) bounds both the API load and how long a resolved
conflict keeps holding the target. A failure to list (403: the Role lacks `list` on them) is
logged once per namespace and treated as "no conflict known": a missing permission must not stop
all scaling, and the log line says which rule to add.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from empire.agent.kube.kubeapi import KubeApi, Rbac
from empire.errors import NotFoundError

__all__ = ["AUTOSCALERS", "Autoscaler", "ConflictChecker"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Autoscaler:
    """A kind of autoscaler whose objects name their workload in `spec.scaleTargetRef`."""

    kind: str
    group: str
    version: str
    plural: str
    default_target_kind: str | None  # KEDA defaults scaleTargetRef.kind to Deployment

    def path(self, namespace: str) -> str:
        return f"/apis/{self.group}/{self.version}/namespaces/{namespace}/{self.plural}"


AUTOSCALERS = (
    Autoscaler("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers", None),
    Autoscaler("ScaledObject", "keda.sh", "v1alpha1", "scaledobjects", "Deployment"),
)


def _group(api_version: str | None) -> str | None:
    if not api_version:
        return None
    return api_version.rpartition("/")[0]


class ConflictChecker:
    def __init__(self, api: KubeApi, *, every: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.every = every
        self._monotonic = monotonic
        # namespace -> (read at, [(autoscaler kind, object name, target kind, target name, target group)])
        self._cache: dict[str, tuple[float, list[tuple[str, str, str, str, str | None]]]] = {}
        self._warned: set[tuple[str, str]] = set()
        self.lists = 0

    async def conflicts(self, namespace: str, kind: str, name: str, group: str | None = None) -> tuple[str, ...]:
        """`Kind/name` of each other autoscaler targeting this workload (empty: none known)."""
        entries = await self._entries(namespace)
        found = []
        for scaler_kind, obj, t_kind, t_name, t_group in entries:
            if t_kind == kind and t_name == name and (group is None or t_group is None or t_group == group):
                found.append(f"{scaler_kind}/{obj}")
        return tuple(sorted(found))

    async def _entries(self, namespace: str) -> list[tuple[str, str, str, str, str | None]]:
        cached = self._cache.get(namespace)
        now = self._monotonic()
        if cached is not None and now - cached[0] < self.every:
            return cached[1]
        entries: list[tuple[str, str, str, str, str | None]] = []
        for a in AUTOSCALERS:
            self.lists += 1
            try:
                body = await self.api.request("GET", a.path(namespace), Rbac(a.group, a.plural, "list", namespace))
            except NotFoundError:
                continue  # the API is not installed (KEDA absent): no such autoscalers
            except Exception as exc:
                if (namespace, a.kind) not in self._warned:
                    self._warned.add((namespace, a.kind))
                    logger.warning("cannot list %ss in namespace %s to detect conflicting autoscalers "
                                   "(targets are scaled as if there were none): %s", a.kind, namespace, exc)  # fmt: skip
                continue
            self._warned.discard((namespace, a.kind))
            for item in body.get("items") or []:
                ref = (item.get("spec") or {}).get("scaleTargetRef") or {}
                t_kind = ref.get("kind") or a.default_target_kind
                if not t_kind or not ref.get("name"):
                    continue
                obj = str((item.get("metadata") or {}).get("name") or "?")
                entries.append((a.kind, obj, str(t_kind), str(ref["name"]), _group(ref.get("apiVersion"))))
        self._cache[namespace] = (now, entries)
        return entries
