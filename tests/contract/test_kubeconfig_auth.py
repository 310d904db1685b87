"""Kubeconfig credentials against the fake API server over real sockets: `exec` credential plugins
(the way EKS, GKE, AKS and OIDC clusters hand out tokens) and TLS (a private CA, mutual TLS with
client certificates inline or in files), as `kubectl` would use them."""

from __future__ import annotations

import base64
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from empire.agent.kube.kubeconfig import load_cluster_config
from empire.agent.kube.scaler import KubernetesScaler
from empire.config.settings import KubernetesSettings
from empire.errors import ConfigError, PermanentError, TemporaryError
from empire.policies.scaling import Target
from fakes.kubernetes import FakeKubernetes
from fakes.tls import Pki, make_pki

pytestmark = pytest.mark.anyio

PLUGIN = """
import json, os, sys
from pathlib import Path
state = Path(sys.argv[1])
n = int(state.read_text()) + 1 if state.exists() else 1
state.write_text(str(n))
Path(str(state) + ".info").write_text(os.environ.get("KUBERNETES_EXEC_INFO", ""))
mode = os.environ.get("PLUGIN_MODE", "ok")
if mode == "fail":
    print("error: the SSO session has expired; run aws sso login", file=sys.stderr)
    sys.exit(2)
if mode == "garbage":
    print("<html>proxy says no</html>")
    sys.exit(0)
if mode == "cert":
    print(json.dumps({"kind": "ExecCredential", "status": {"clientCertificateData": "x", "clientKeyData": "y"}}))
    sys.exit(0)
status = {"token": f"tok-{n}"}
if os.environ.get("PLUGIN_EXPIRES"):
    status["expirationTimestamp"] = os.environ["PLUGIN_EXPIRES"]
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential", "status": status}))
"""


def target() -> Target:
    return Target.model_validate({"name": "web", "workload": {"name": "web", "namespace": "music"},
                                  "max_replicas": 20, "signals": [{"name": "q", "query": "q", "target": 1}]})  # fmt: skip


def kubeconfig(tmp_path: Path, server: str, user: dict, cluster: dict | None = None) -> KubernetesSettings:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [{"name": "k", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(doc))  # JSON is YAML
    return KubernetesSettings(mode="kubeconfig", kubeconfig=path)


def exec_user(tmp_path: Path, **env: str) -> dict:
    script = tmp_path / "plugin.py"
    script.write_text(PLUGIN)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                     "args": [str(script), str(tmp_path / "calls")], "interactiveMode": "Never",
                     "env": [{"name": k, "value": v} for k, v in env.items()]}}  # fmt: skip


def calls(tmp_path: Path) -> int:
    return int((tmp_path / "calls").read_text())


@pytest.fixture
def kube():
    fake = FakeKubernetes(token="tok-1")
    fake.add("web", 2, "music")
    with fake.serve() as url:
        fake.url = url
        yield fake


async def test_exec_plugin_token_is_cached_then_fetched_again_after_a_401(tmp_path, kube) -> None:
    cc = load_cluster_config(kubeconfig(tmp_path, kube.url, exec_user(tmp_path)))
    assert cc is not None and "tok-" not in repr(cc)
    scaler = KubernetesScaler(cc)
    try:
        for _ in range(3):
            assert (await scaler.workload(target())).replicas == 2
        assert calls(tmp_path) == 1  # no expiry given: one run serves every request
        info = json.loads((tmp_path / "calls.info").read_text())
        assert info["kind"] == "ExecCredential" and info["spec"] == {"interactive": False}
        kube.token = "tok-2"  # the API server no longer accepts the cached token
        assert (await scaler.workload(target())).replicas == 2
        assert calls(tmp_path) == 2
    finally:
        await scaler.aclose()


async def test_exec_plugin_runs_again_when_its_token_expires(tmp_path, kube) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")  # inside the 10 s margin
    settings = kubeconfig(tmp_path, kube.url, exec_user(tmp_path, PLUGIN_EXPIRES=soon))
    kube.token = None
    scaler = KubernetesScaler(load_cluster_config(settings))  # type: ignore[arg-type]
    try:  # two requests, each with a token about to expire: the plugin runs for each
        await scaler.api.request("GET", "/api")
        await scaler.api.request("GET", "/api")
    finally:
        await scaler.aclose()
    assert calls(tmp_path) == 2
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cc = load_cluster_config(kubeconfig(tmp_path, kube.url, exec_user(tmp_path, PLUGIN_EXPIRES=later)))
    assert cc is not None and cc.bearer_token() == cc.bearer_token() == "tok-3" and calls(tmp_path) == 3


async def test_exec_plugin_failures_are_classified_and_say_what_to_do(tmp_path, kube) -> None:
    def token(**env: str) -> str | None:
        cc = load_cluster_config(kubeconfig(tmp_path, kube.url, exec_user(tmp_path, **env)))
        assert cc is not None
        return cc.bearer_token()

    with pytest.raises(TemporaryError, match="exited with 2: error: the SSO session has expired"):
        token(PLUGIN_MODE="fail")
    with pytest.raises(TemporaryError, match="no ExecCredential JSON"):
        token(PLUGIN_MODE="garbage")
    with pytest.raises(ConfigError, match="client certificate"):
        token(PLUGIN_MODE="cert")
    missing = {"exec": {"command": "aws-iam-authenticator-not-installed", "installHint": "brew install it"}}
    cc = load_cluster_config(kubeconfig(tmp_path, kube.url, missing))
    with pytest.raises(ConfigError, match="not found on PATH \\(brew install it\\)"):
        cc.bearer_token()  # type: ignore[union-attr]
    interactive = {"exec": {"command": "kubelogin", "interactiveMode": "Always"}}
    with pytest.raises(ConfigError, match="needs a terminal"):
        load_cluster_config(kubeconfig(tmp_path, kube.url, interactive))
    with pytest.raises(ConfigError, match=r"auth-provider plugin \(removed in Kubernetes 1.26\)"):
        load_cluster_config(kubeconfig(tmp_path, kube.url, {"auth-provider": {"name": "gcp"}}))


async def test_exec_plugin_gets_cluster_info_when_asked(tmp_path, kube) -> None:
    user = exec_user(tmp_path)
    user["exec"]["provideClusterInfo"] = True
    cc = load_cluster_config(kubeconfig(tmp_path, kube.url, user, {"insecure-skip-tls-verify": True}))
    assert cc is not None and cc.bearer_token() == "tok-1"
    info = json.loads((tmp_path / "calls.info").read_text())
    assert info["spec"]["cluster"] == {"server": kube.url, "insecure-skip-tls-verify": True}


# -- TLS ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mtls_kube(pki):
    """The fake API server behind TLS that requires a client certificate signed by the test CA."""
    import ssl

    fake = FakeKubernetes()
    fake.add("web", 4, "music")
    tls = {"ssl_certfile": str(pki.server_cert), "ssl_keyfile": str(pki.server_key),
           "ssl_ca_certs": str(pki.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}  # fmt: skip
    with fake.serve(tls=tls) as url:
        fake.url = url
        yield fake


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def read_replicas(settings: KubernetesSettings) -> int:
    scaler = KubernetesScaler(load_cluster_config(settings), attempts=1)  # type: ignore[arg-type]
    try:
        return (await scaler.workload(target())).replicas
    finally:
        await scaler.aclose()


async def test_mutual_tls_with_inline_certificates(tmp_path, pki, mtls_kube) -> None:
    user = {"client-certificate-data": b64(pki.read("client_cert")), "client-key-data": b64(pki.read("client_key"))}
    settings = kubeconfig(tmp_path, mtls_kube.url, user, {"certificate-authority-data": b64(pki.read("ca"))})
    assert mtls_kube.url.startswith("https://") and await read_replicas(settings) == 4
    cc = load_cluster_config(settings)
    assert cc is not None and "PRIVATE KEY" not in repr(cc)


async def test_mutual_tls_with_certificate_files_relative_to_the_kubeconfig(tmp_path, pki, mtls_kube) -> None:
    for name in ("ca", "client_cert", "client_key"):
        (tmp_path / f"{name}.pem").write_bytes(pki.read(name))
    user = {"client-certificate": "client_cert.pem", "client-key": "client_key.pem"}
    settings = kubeconfig(tmp_path, mtls_kube.url, user, {"certificate-authority": "ca.pem"})
    assert await read_replicas(settings) == 4


async def test_an_untrusted_server_certificate_is_a_permanent_error(tmp_path, pki, mtls_kube) -> None:
    other = make_pki(tmp_path / "other")  # a CA that did not sign the server's certificate
    user = {"client-certificate-data": b64(pki.read("client_cert")), "client-key-data": b64(pki.read("client_key"))}
    settings = kubeconfig(tmp_path, mtls_kube.url, user, {"certificate-authority-data": b64(other.read("ca"))})
    with pytest.raises(PermanentError, match="TLS certificate not trusted"):
        await read_replicas(settings)


async def test_no_client_certificate_is_refused_by_the_server(tmp_path, pki, mtls_kube) -> None:
    settings = kubeconfig(tmp_path, mtls_kube.url, {}, {"certificate-authority-data": b64(pki.read("ca"))})
    with pytest.raises(TemporaryError, match="unreachable"):
        await read_replicas(settings)
