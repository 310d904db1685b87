"""Kubeconfig `exec` credential plugins: how EKS (`aws eks get-token`), GKE
(`gke-gcloud-auth-plugin`), AKS (`kubelogin`) and OIDC set-ups hand out API tokens.

The plugin is a command; it prints an `ExecCredential` JSON object whose `status.token` is the
bearer token and `status.expirationTimestamp` (optional) says when to ask again. We run it the way
kubectl does (client-go's `exec` authenticator): the kubeconfig's `env` added to ours,
`KUBERNETES_EXEC_INFO` describing the request (never interactive: a daemon has no terminal), the
token cached until 10 s before it expires and fetched again after a 401.

Why the agent does this itself rather than asking operators for a long-lived token: long-lived
tokens are what cloud clusters are moving away from, and a token the agent re-fetches never
silently expires under a running daemon.

Errors: the command missing or a plugin that needs a terminal is a `ConfigError` (fix the
kubeconfig); a plugin that fails, hangs or prints garbage is a `TemporaryError` (cloud IAM
hiccups pass; the loop retries next tick). Client certificates from a plugin are refused with a
clear error: the TLS context is built once per client, so they could not rotate.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from empire.errors import ConfigError, TemporaryError

__all__ = ["ExecPlugin"]

_EARLY = timedelta(seconds=10)  # refresh this long before the plugin's expiry
_DEFAULT_API = "client.authentication.k8s.io/v1"


@dataclass
class ExecPlugin:
    """One kubeconfig user's `exec` section. Thread-safe: sync and async clients may share it."""

    command: str
    source: str  # "kubeconfig PATH user NAME", for error messages
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    api_version: str = _DEFAULT_API
    cluster: dict[str, Any] | None = field(default=None, repr=False)  # provideClusterInfo
    install_hint: str = ""
    timeout: float = 60.0
    _token: str | None = field(default=None, repr=False)
    _expires: datetime | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_kubeconfig(cls, spec: dict[str, Any], source: str, cluster: dict[str, Any]) -> ExecPlugin:
        if not spec.get("command"):
            raise ConfigError(f"{source}: exec has no command")
        if spec.get("interactiveMode") == "Always":
            raise ConfigError(f"{source}: exec plugin {spec['command']!r} needs a terminal (interactiveMode: "
                              "Always); empire runs unattended: use a plugin mode that is not interactive")  # fmt: skip
        env = {str(e["name"]): str(e.get("value", "")) for e in spec.get("env") or []}
        info = {k: cluster[k] for k in ("server", "certificate-authority-data", "insecure-skip-tls-verify")
                if k in cluster}  # fmt: skip
        return cls(
            command=str(spec["command"]), source=source, args=[str(a) for a in spec.get("args") or []], env=env,
            api_version=str(spec.get("apiVersion") or _DEFAULT_API), install_hint=str(spec.get("installHint") or ""),
            cluster=info if spec.get("provideClusterInfo") else None,
        )  # fmt: skip

    def fresh(self, now: datetime | None = None) -> bool:
        """True when the cached token can be used without running the plugin."""
        if self._token is None:
            return False
        return self._expires is None or (now or datetime.now(UTC)) < self._expires - _EARLY

    def token(self) -> str:
        """The cached token, or a new one from the plugin (blocking: async callers use a thread)."""
        with self._lock:
            if not self.fresh():
                self._token, self._expires = self._run()
            assert self._token is not None
            return self._token

    def refresh(self) -> str:
        """Run the plugin now (after the API server answered 401 to the cached token)."""
        with self._lock:
            self._token, self._expires = self._run()
            return self._token

    def _run(self) -> tuple[str, datetime | None]:
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = self.cluster
        info = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        what = f"{self.source}: exec plugin {self.command!r}"
        try:
            proc = subprocess.run([self.command, *self.args], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=self.timeout, check=False)  # fmt: skip
        except FileNotFoundError:
            hint = f" ({self.install_hint.strip()})" if self.install_hint.strip() else ""
            raise ConfigError(f"{what} not found on PATH{hint}") from None
        except subprocess.TimeoutExpired:
            raise TemporaryError(f"{what} did not answer within {self.timeout:g}s") from None
        except OSError as exc:
            raise ConfigError(f"{what} cannot run: {exc}") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["no error output"])[-1][:300]
            raise TemporaryError(f"{what} exited with {proc.returncode}: {last}")
        return self._parse(proc.stdout, what)

    @staticmethod
    def _parse(stdout: str, what: str) -> tuple[str, datetime | None]:
        try:
            status = json.loads(stdout).get("status") or {}
        except (ValueError, AttributeError):
            raise TemporaryError(f"{what} printed no ExecCredential JSON") from None
        token = status.get("token")
        if not token:
            if status.get("clientCertificateData"):
                raise ConfigError(f"{what} returns a client certificate; empire supports token plugins only")
            raise TemporaryError(f"{what} returned no status.token")
        expires = status.get("expirationTimestamp")
        if not expires:
            return str(token), None
        try:
            at = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        except ValueError:
            raise TemporaryError(f"{what} returned a bad expirationTimestamp {expires!r}") from None
        return str(token), at if at.tzinfo else at.replace(tzinfo=UTC)
