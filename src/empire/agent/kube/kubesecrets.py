"""Read Kubernetes Secrets named by the policy (`{secret: {name, key}}`), for the agent's resolver.

The one resolver (`empire.config.secrets.resolve_secret`, used by the pools, alerting and the S3
backend) takes a reader `(name, key) -> str` for `secret:` references; this is it. Synchronous,
because the resolver is, and cached for `ttl` seconds, so a provider rebuilt on every policy
reload does not hit the API each time while a rotated Secret is still picked up within a minute.

Only `get` on the named Secrets is needed (RBAC `resourceNames`; see `deploy/base/rbac.yaml`), never
`list`. Values never appear in errors, logs or reprs: messages name the Secret and the key only.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from empire.errors import ConfigError, PermanentError, TemporaryError

__all__ = ["KubernetesSecretReader", "agent_namespace"]

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def agent_namespace(default: str = "default") -> str:
    """The namespace the agent runs in: $POD_NAMESPACE, else the service account's, else `default`."""
    env = os.environ.get("POD_NAMESPACE")
    if env:
        return env
    try:
        return NAMESPACE_FILE.read_text().strip() or default
    except OSError:
        return default


class KubernetesSecretReader:
    """`reader(name, key)`: the decoded value of `data[key]` of Secret `name` in `namespace`."""

    def __init__(
        self,
        config: Any,  # empire.agent.kube.kubeconfig.ClusterConfig
        namespace: str | None = None,
        *,
        ttl: float = 60.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.namespace = namespace or agent_namespace()
        self.ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._client = httpx.Client(**config.client_options(timeout, transport))

    def __repr__(self) -> str:
        return f"KubernetesSecretReader(namespace={self.namespace!r}, server={self.config.server!r})"

    def close(self) -> None:
        self._client.close()

    def __call__(self, name: str, key: str) -> str:
        data = self._data(name)
        if key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise ConfigError(f"Secret {self.namespace}/{name} has no key {key!r} (keys: {keys})")
        try:
            return base64.b64decode(data[key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ConfigError(f"Secret {self.namespace}/{name} key {key!r} is not base64-encoded UTF-8") from None

    def _data(self, name: str) -> dict[str, str]:
        now = self._clock()
        hit = self._cache.get(name)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        path = f"/api/v1/namespaces/{self.namespace}/secrets/{name}"
        try:
            resp = self._client.get(path)
        except httpx.HTTPError as exc:
            raise TemporaryError(f"kubernetes API {self.config.server}: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise PermanentError(
                f"reading Secret {self.namespace}/{name} was refused ({resp.status_code}): the agent's Role needs "
                f'apiGroups: [""], resources: ["secrets"], resourceNames: ["{name}"], verbs: ["get"]'
            )
        if resp.status_code == 404:
            raise ConfigError(f"Secret {self.namespace}/{name} does not exist")
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TemporaryError(f"kubernetes API answered {resp.status_code} reading Secret {self.namespace}/{name}")
        if resp.status_code >= 300:
            raise PermanentError(f"kubernetes API answered {resp.status_code} reading Secret {self.namespace}/{name}")
        data = dict(resp.json().get("data") or {})
        self._cache[name] = (now, data)
        return data
