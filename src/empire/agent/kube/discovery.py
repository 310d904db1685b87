"""API discovery: which resource serves a workload kind, and does it have a `scale` subresource?

Why discovery and not a table of kinds: a target may be any scalable resource (Deployment,
StatefulSet, ReplicaSet, an Argo Rollout, a custom resource whose CRD declares
`subresources.scale`), exactly what HPA's `scaleTargetRef` accepts. The cluster alone knows its
kinds, so the agent asks it as kubectl and HPA do: `/api` and `/apis` list the groups, and
`/api/v1` or `/apis/GROUP/VERSION` list a version's resources, with `NAME/scale` entries for the
scalable ones.

Resolution (`Discovery.resolve(kind, api_version)`):

* with an `api_version` (`argoproj.io/v1alpha1`), only that group/version is read;
* without one, the core and `apps` groups win (a `Deployment` is always apps/v1), else the
  preferred version of every group is read and the kind must be served by exactly one group
  (several: a permanent error asking for `api_version`).

The answers are cached; a miss refreshes the cache (at most once per `refresh_after` seconds, so a
typo in a policy cannot make every tick walk every group), then a kind still unknown or not
scalable is a `PermanentError` naming the kind and what discovery found.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from empire.errors import NotFoundError, PermanentError

__all__ = ["ApiResource", "Discovery", "parse_resource_list"]

logger = logging.getLogger(__name__)

Getter = Callable[[str], Awaitable[dict[str, Any]]]
PRIORITY = ("", "apps")  # the groups that win without an api_version, like kubectl's discovery order


@dataclass(frozen=True)
class ApiResource:
    """One resource kind of one group/version, as discovery lists it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    scalable: bool  # discovery lists `PLURAL/scale`

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str, subresource: str = "") -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if self.namespaced else ""
        return f"{root}{ns}/{self.plural}/{name}" + (f"/{subresource}" if subresource else "")


def parse_resource_list(group: str, version: str, body: dict[str, Any]) -> list[ApiResource]:
    """An APIResourceList (`/api/v1`, `/apis/G/V`) as ApiResources (subresource entries folded in)."""
    entries = [r for r in body.get("resources") or [] if isinstance(r, dict) and r.get("name")]
    names = {str(r["name"]) for r in entries}
    out = []
    for r in entries:
        name = str(r["name"])
        if "/" in name:
            continue
        out.append(ApiResource(group, version, name, str(r.get("kind") or ""), bool(r.get("namespaced")),
                               f"{name}/scale" in names))  # fmt: skip
    return out


def _split(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class Discovery:
    """Cached API discovery over `get(path) -> JSON` (the agent's `KubeApi`, which classifies errors)."""

    def __init__(
        self, get: Getter, *, refresh_after: float = 60.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._get = get
        self.refresh_after = refresh_after
        self._monotonic = monotonic
        self._versions: dict[tuple[str, str], list[ApiResource]] = {}  # (group, version) -> resources
        self._preferred: list[tuple[str, str]] | None = None  # every group's preferred version
        self._refreshed_at: float | None = None
        self.refreshes = 0
        self._lock = anyio.Lock()

    async def resolve(self, kind: str, api_version: str | None = None) -> ApiResource:
        """The scalable resource serving `kind`, or a PermanentError naming what was found."""
        found = self._lookup(kind, api_version)
        if found is None:
            async with self._lock:  # concurrent targets: one refresh, the others read its result
                found = self._lookup(kind, api_version)
                unseen = api_version is not None and _split(api_version) not in self._versions
                if found is None and (unseen or self._may_refresh()):
                    await self._refresh(api_version)
                    found = self._lookup(kind, api_version)
        if found is None:
            raise PermanentError(self._not_found(kind, api_version))
        if not found.scalable:
            raise PermanentError(
                f"workload kind {kind} ({found.api_version} {found.plural}) has no scale subresource, so it cannot "
                f"be scaled; scalable kinds found: {self._scalable_kinds()}"
            )
        return found

    # -- cache --------------------------------------------------------------------------------
    def _lookup(self, kind: str, api_version: str | None) -> ApiResource | None:
        if api_version is not None:
            return next((r for r in self._versions.get(_split(api_version), []) if r.kind == kind), None)
        if self._preferred is None:
            return None
        matches = [r for gv in self._preferred for r in self._versions.get(gv, []) if r.kind == kind]
        for group in PRIORITY:
            first = next((r for r in matches if r.group == group), None)
            if first is not None:
                return first
        groups = sorted({r.api_version for r in matches})
        if len(groups) > 1:
            raise PermanentError(f"workload kind {kind} is served by several API groups ({', '.join(groups)}): "
                                 "set the target's workload.api_version to choose one")  # fmt: skip
        return matches[0] if matches else None

    def _may_refresh(self) -> bool:
        at = self._refreshed_at
        return at is None or self._monotonic() - at >= self.refresh_after

    async def _refresh(self, api_version: str | None) -> None:
        """Re-read the API: one group/version when it is named, else every group's preferred one."""
        self._refreshed_at = self._monotonic()
        self.refreshes += 1
        if api_version is not None:
            group, version = _split(api_version)
            await self._read_version(group, version)
            return
        wanted: list[tuple[str, str]] = [("", v) for v in (await self._get("/api")).get("versions") or ["v1"]]
        for g in (await self._get("/apis")).get("groups") or []:
            preferred = (g.get("preferredVersion") or {}).get("version")
            versions = [v.get("version") for v in g.get("versions") or [] if v.get("version")]
            version = preferred or (versions[0] if versions else None)
            if g.get("name") and version:
                wanted.append((str(g["name"]), str(version)))
        for group, version in wanted:
            await self._read_version(group, version)
        self._preferred = wanted
        logger.info("API discovery: %d group versions, scalable kinds: %s", len(wanted), self._scalable_kinds())

    async def _read_version(self, group: str, version: str) -> None:
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            body = await self._get(path)
        except NotFoundError:
            self._versions[(group, version)] = []  # a group removed meanwhile, or a typo in api_version
            return
        self._versions[(group, version)] = parse_resource_list(group, version, body)

    # -- messages -----------------------------------------------------------------------------
    def _scalable_kinds(self) -> str:
        kinds = sorted({f"{r.kind} ({r.api_version})" for rs in self._versions.values() for r in rs if r.scalable})
        return ", ".join(kinds) or "none"

    def _not_found(self, kind: str, api_version: str | None) -> str:
        where = (
            f"API group/version {api_version}" if api_version else f"{len(self._preferred or [])} API group versions"
        )
        others = sorted({r.api_version for rs in self._versions.values() for r in rs if r.kind == kind})
        also = f"; it exists in {', '.join(others)} (fix workload.api_version)" if others else ""
        return (f"workload kind {kind} not found through API discovery ({where}){also}: is its CRD installed and "
                f"the kind spelled as in its manifest? Scalable kinds found: {self._scalable_kinds()}")  # fmt: skip
