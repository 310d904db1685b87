"""Kubernetes ServiceAccount tokens on the agent's API: the API server says who the caller is
(TokenReview) and its RBAC says what they may do (SubjectAccessReview), as kube-rbac-proxy and
metrics-server do. On when `EMPIRE_HTTP__KUBERNETES_AUTH=true` and a cluster is configured.

A request is authorized as a *non-resource URL*: the path and the verb (`get` for reads,
`create` for POST, `delete` for DELETE), so RBAC grants the API like it grants `/metrics`:

    kind: ClusterRole
    rules:
    - nonResourceURLs: ["/v1/jobs", "/v1/jobs/*"]
      verbs: ["get", "create"]

Answers are cached (a token's review for `cache_seconds`, 60 s by default; an access review per
user, path and verb as long), bounded in number, so a busy client costs the API server two
requests a minute, not two per request. The agent's ServiceAccount needs `create` on
`tokenreviews` (authentication.k8s.io) and `subjectaccessreviews` (authorization.k8s.io), the
`system:auth-delegator` ClusterRole: bind it when you turn this on (deploy/base/rbac.yaml grants
nothing cluster-wide by default). An API server that cannot be reached is a `TemporaryError`
(the gate answers 503), never a silent refusal or a grant.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import httpx

from empire.agent.api.auth import Denied, Principal
from empire.errors import TemporaryError

__all__ = ["KubernetesReviewer"]

logger = logging.getLogger(__name__)

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"  # noqa: S105 - a path, not a password
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"


class _Cache:
    def __init__(self, seconds: float, size: int, now: Callable[[], float]) -> None:
        self.seconds, self.size, self.now = seconds, size, now
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any:
        hit = self._items.get(key)
        if hit is None or self.now() - hit[0] >= self.seconds:
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        self._items[key] = (self.now(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class KubernetesReviewer:
    """`external` for `auth.Authenticator`: a bearer token that is not one of ours goes to the API server."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        audiences: tuple[str, ...] = (),
        cache_seconds: float = 60.0,
        cache_size: int = 4096,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.audiences = client, audiences
        self._users = _Cache(cache_seconds, cache_size, monotonic)
        self._access = _Cache(cache_seconds, cache_size, monotonic)

    async def __call__(self, token: str) -> Principal | Denied | None:
        key = hashlib.sha256(token.encode()).hexdigest()  # the cache never holds a token
        user = self._users.get(key)
        if user is None:
            spec: dict[str, Any] = {"token": token}
            if self.audiences:
                spec["audiences"] = list(self.audiences)
            status = await self._post(TOKEN_REVIEWS, "TokenReview", "authentication.k8s.io/v1", spec)
            user = status.get("user", {}) if status.get("authenticated") else {}
            self._users.put(key, user)
        if not user.get("username"):
            return Denied("invalid bearer token")
        name = str(user["username"])

        async def authorize(path: str, verb: str) -> bool:
            return await self.allowed(user, path, verb)

        return Principal(name, frozenset(), "kubernetes", authorize=authorize)

    async def allowed(self, user: dict[str, Any], path: str, verb: str) -> bool:
        key = (user.get("username"), user.get("uid"), tuple(user.get("groups") or ()), path, verb)
        known = self._access.get(key)
        if known is not None:
            return bool(known)
        spec = {"user": user.get("username"), "uid": user.get("uid"), "groups": list(user.get("groups") or ()),
                "extra": user.get("extra") or {}, "nonResourceAttributes": {"path": path, "verb": verb}}  # fmt: skip
        status = await self._post(ACCESS_REVIEWS, "SubjectAccessReview", "authorization.k8s.io/v1", spec)
        allowed = bool(status.get("allowed")) and not status.get("denied")
        self._access.put(key, allowed)
        if not allowed:
            logger.info("kubernetes: %s may not %s %s (%s)", user.get("username"), verb, path,
                        status.get("reason") or "no RBAC rule allows it")  # fmt: skip
        return allowed

    async def _post(self, path: str, kind: str, api_version: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": api_version, "kind": kind, "spec": spec}
        try:
            r = await self.client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"kubernetes {kind}: API server unreachable ({type(exc).__name__})") from None
        if r.status_code in (429,) or r.status_code >= 500:
            raise TemporaryError(f"kubernetes {kind}: API server answered {r.status_code}")
        if r.status_code >= 400:  # 403: the agent's ServiceAccount lacks system:auth-delegator
            logger.warning("kubernetes %s refused with %s: bind the agent's ServiceAccount to the "
                           "system:auth-delegator ClusterRole", kind, r.status_code)  # fmt: skip
            raise TemporaryError(f"kubernetes {kind}: the API server refused the review ({r.status_code})")
        try:
            return dict(r.json().get("status") or {})
        except ValueError:
            raise TemporaryError(f"kubernetes {kind}: the API server's answer is not JSON") from None
