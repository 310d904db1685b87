"""Where the Kubernetes API is and how to authenticate: in-cluster service account, or a kubeconfig.

Why a client of our own (about 1,200 lines with `kubeexec`, `kubeapi`, `discovery`, `scaler`, `events`,
`conflicts`, `kubesecrets`, `dryrun`) and not a library: the agent needs a few calls (discovery, get
a workload, get/patch its scale subresource, list HPAs/ScaledObjects, post/patch Events, read a
Secret) and classifies every failure itself (409/429/5xx temporary, 403/404 permanent) with the
same `httpretry` rules as its other httpx adapters. Reconsidered against lightkube (issue 16; the
maintained async client), 1.0.1 as of this writing, and kept because:

* a second HTTP stack: lightkube 1.x is built on `httpx2`/`httpcore2` (a fork), not `httpx`, so the
  agent would carry two HTTP clients and map two exception trees into `TemporaryError`/
  `PermanentError`; with its dependencies (msgspec, h2, wsproto, truststore, lightkube-models) it
  installs 15 MB for what these modules do in ~650 lines;
* missing features the agent relies on: its exec-plugin authenticator has no timeout (a hung
  `aws eks get-token` would hang the scaler; `kubeexec` gives up after a bounded wait), ignores
  `expirationTimestamp` (re-runs the plugin only after a 401) and does not send
  `KUBERNETES_EXEC_INFO`; a kubeconfig without a user falls back to an interactive prompt, which a
  daemon cannot answer; kubeconfig and token files are read without the size limits every file the
  agent reads has (`empire.boundedio`, issue 13).

What lightkube would remove is mostly this module and `kubeexec` (~350 lines); the scaler and the
Secret reader would shrink little. Revisit if lightkube moves back to httpx or the agent needs watches.
Any resource kind is reachable without generated models: `discovery` finds its path and replicas
go through the generic `/scale` subresource.

In-cluster: `KUBERNETES_SERVICE_HOST/PORT`, the token and CA under
`/var/run/secrets/kubernetes.io/serviceaccount/`. The token is re-read at most once a minute
because projected service-account tokens rotate. Kubeconfig: `$KUBECONFIG` (first file) or
`~/.kube/config`, the named or current context; token, tokenFile, client certificates (file or
inline data), basic auth and `exec` credential plugins (`kubeexec.ExecPlugin`: EKS, GKE, AKS, OIDC)
are supported; the removed `auth-provider` plugins are refused with a clear ConfigError.
`ClusterConfig.client_options()` is how every httpx client of the API is built (the scaler, the
Secret reader), so they send the same credentials, TLS settings and headers.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import yaml

from empire.agent.kube.kubeexec import ExecPlugin
from empire.boundedio import MAX_SMALL_FILE_BYTES, MAX_YAML_BYTES, read_bounded_text
from empire.errors import ConfigError

__all__ = ["SERVICE_ACCOUNT_DIR", "ClusterConfig", "load_cluster_config"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class ClusterConfig:
    server: str
    source: str  # "in-cluster" or the kubeconfig path and context, for log lines
    token: str | None = field(default=None, repr=False)
    token_file: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    ca_data: str | None = field(default=None, repr=False)
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = field(default=None, repr=False)
    key_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    exec_plugin: ExecPlugin | None = None
    _token_read_at: float = 0.0

    def bearer_token(self) -> str | None:
        if self.exec_plugin is not None:
            return self.exec_plugin.token()
        if self.token_file is not None and (self.token is None or time.monotonic() - self._token_read_at > 60):
            try:
                self.token = read_bounded_text(self.token_file, MAX_SMALL_FILE_BYTES, "token file").strip()
                self._token_read_at = time.monotonic()
            except ConfigError as exc:
                raise ConfigError(f"cannot read the service-account token: {exc}") from None
        return self.token

    def client_options(self, timeout: float, transport: Any = None) -> dict[str, Any]:
        """Keyword arguments for an `httpx.Client` or `httpx.AsyncClient` of this API server."""
        return {
            "base_url": self.server, "timeout": timeout, "verify": self.verify(), "auth": _ApiAuth(self),
            "transport": transport, "headers": {"Accept": "application/json", "User-Agent": "empire"},
        }  # fmt: skip

    def verify(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return True
        if self.insecure:
            return False
        ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_data and self.key_data:
            with tempfile.TemporaryDirectory() as tmp:  # ssl needs files; they live only for this call
                cert, key = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
                cert.write_bytes(self.cert_data)
                key.touch(mode=0o600)
                key.write_bytes(self.key_data)
                ctx.load_cert_chain(str(cert), str(key))
        return ctx


class _ApiAuth(httpx.Auth):
    """The cluster's credentials on each request: basic auth when the kubeconfig user has a
    username, else the bearer token, looked up per request (`bearer_token()` follows rotation).
    With an exec plugin, a 401 fetches a new token and the request is sent once more; the async
    flow runs the plugin in a worker thread so the event loop never waits on a subprocess."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config

    def _sign(self, request: httpx.Request, token: str | None) -> None:
        c = self.config
        if c.username:
            pair = f"{c.username}:{c.password or ''}".encode()
            request.headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        elif token:
            request.headers["Authorization"] = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        plugin = self.config.exec_plugin
        self._sign(request, None if self.config.username else self.config.bearer_token())
        response = yield request
        if response.status_code == 401 and plugin is not None:
            self._sign(request, plugin.refresh())
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        plugin, token = self.config.exec_plugin, None
        if plugin is not None and not self.config.username:
            token = plugin.token() if plugin.fresh() else await anyio.to_thread.run_sync(plugin.token)
        elif not self.config.username:
            token = self.config.bearer_token()
        self._sign(request, token)
        response = yield request
        if response.status_code == 401 and plugin is not None:
            self._sign(request, await anyio.to_thread.run_sync(plugin.refresh))
            yield request


def _in_cluster(sa_dir: Path) -> ClusterConfig:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host or not (sa_dir / "token").is_file():
        raise ConfigError("not running in a cluster: KUBERNETES_SERVICE_HOST or the service-account token is missing")
    host = f"[{host}]" if ":" in host else host
    ca = sa_dir / "ca.crt"
    return ClusterConfig(
        server=f"https://{host}:{port}", source="in-cluster", token_file=sa_dir / "token",
        ca_file=str(ca) if ca.is_file() else None,
    )  # fmt: skip


def _kubeconfig_path(configured: Path | None) -> Path:
    if configured is not None:
        return configured
    env = os.environ.get("KUBECONFIG")
    if env:
        return Path(env.split(os.pathsep)[0])
    return Path.home() / ".kube" / "config"


def _named(items: list[dict[str, Any]], name: str, what: str, path: Path) -> dict[str, Any]:
    for item in items or []:
        if item.get("name") == name:
            return item.get(what) or {}
    names = ", ".join(str(i.get("name")) for i in items or []) or "none"
    raise ConfigError(f"{path}: no {what} named {name!r} (valid: {names})")


def _from_kubeconfig(path: Path, context: str | None) -> ClusterConfig:
    text = read_bounded_text(path, MAX_YAML_BYTES, "kubeconfig")
    try:
        doc = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise ConfigError(f"cannot read kubeconfig {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"cannot read kubeconfig {path}: expected a mapping, got {type(doc).__name__}")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise ConfigError(f"{path}: no current-context; set EMPIRE_KUBERNETES__CONTEXT")
    ctx = _named(doc.get("contexts", []), ctx_name, "context", path)
    cluster = _named(doc.get("clusters", []), ctx.get("cluster", ""), "cluster", path)
    user = _named(doc.get("users", []), ctx.get("user", ""), "user", path) if ctx.get("user") else {}
    if "auth-provider" in user:
        raise ConfigError(
            f"{path}: user {ctx.get('user')!r} uses an auth-provider plugin (removed in Kubernetes 1.26); "
            "use its exec plugin instead (e.g. gke-gcloud-auth-plugin, kubelogin) or a token"
        )
    if not cluster.get("server"):
        raise ConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    plugin = None
    if user.get("exec"):
        plugin = ExecPlugin.from_kubeconfig(user["exec"], f"kubeconfig {path} user {ctx.get('user')!r}", cluster)

    def rel(p: str | None) -> str | None:
        return None if p is None else str((path.parent / p) if not os.path.isabs(p) else Path(p))

    def b64(v: str | None) -> bytes | None:
        return base64.b64decode(v) if v else None

    ca_data = b64(cluster.get("certificate-authority-data"))
    return ClusterConfig(
        server=cluster["server"].rstrip("/"), source=f"kubeconfig {path} (context {ctx_name})",
        token=user.get("token"), token_file=Path(rel(user["tokenFile"])) if user.get("tokenFile") else None,  # type: ignore[arg-type]
        username=user.get("username"), password=user.get("password"),
        ca_file=rel(cluster.get("certificate-authority")), ca_data=ca_data.decode() if ca_data else None,
        cert_file=rel(user.get("client-certificate")), key_file=rel(user.get("client-key")),
        cert_data=b64(user.get("client-certificate-data")), key_data=b64(user.get("client-key-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")), exec_plugin=plugin,
    )  # fmt: skip


def load_cluster_config(settings: Any, sa_dir: Path = SERVICE_ACCOUNT_DIR) -> ClusterConfig | None:
    """From `Settings.kubernetes`. None when mode is `disabled`, or `auto` finds no cluster at all."""
    mode = settings.mode
    if mode == "disabled":
        return None
    if mode == "in_cluster":
        return _in_cluster(sa_dir)
    if mode == "auto" and os.environ.get("KUBERNETES_SERVICE_HOST") and (sa_dir / "token").is_file():
        return _in_cluster(sa_dir)
    path = _kubeconfig_path(settings.kubeconfig)
    if not path.is_file():
        if mode == "kubeconfig":
            raise ConfigError(f"kubeconfig {path} not found (EMPIRE_KUBERNETES__KUBECONFIG or $KUBECONFIG)")
        return None
    return _from_kubeconfig(path, settings.context)
