"""One secret resolver for every area: env, file and Kubernetes Secret references (`empire.config.secrets`)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import httpx
import pytest

from empire.agent.alerting.secrets import redact_in_logs, resolver
from empire.agent.alerting.secrets import resolve_secret as alerting_resolve
from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.kubesecrets import KubernetesSecretReader
from empire.agent.pools.build import build_adapters
from empire.config.secrets import resolve_secret, resolve_secret_value
from empire.errors import ConfigError, PermanentError
from empire.policies.common import SecretRef
from empire.policies.schema import parse_policy

VALUE = "sk-live-do-not-print-123"


def kube(data: dict[str, str] | None = None, status: int = 200) -> KubernetesSecretReader:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in (data or {"key-2": VALUE}).items()}

    def api(request: httpx.Request) -> httpx.Response:
        if status != 200:
            return httpx.Response(status, json={"kind": "Status"})
        return httpx.Response(200, json={"kind": "Secret", "data": encoded})

    config = ClusterConfig(server="https://k8s.example", source="test", token="t")
    return KubernetesSecretReader(config, "empire", transport=httpx.MockTransport(api))


def test_env_reference() -> None:
    secret = resolve_secret(SecretRef(env="K"), env={"K": f"  {VALUE}\n"})
    assert secret.get_secret_value() == VALUE  # surrounding whitespace is not part of a key
    assert VALUE not in repr(secret) and VALUE not in str(secret)


@pytest.mark.parametrize("env", [{}, {"K": ""}, {"K": "   "}])
def test_missing_or_empty_env_names_the_reference(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="env:K") as info:
        resolve_secret(SecretRef(env="K"), env=env)
    assert "not set" in str(info.value)


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPIRE_TEST_SECRET_X", VALUE)
    assert resolve_secret_value(SecretRef(env="EMPIRE_TEST_SECRET_X")) == VALUE
    monkeypatch.delenv("EMPIRE_TEST_SECRET_X")
    with pytest.raises(ConfigError, match="env:EMPIRE_TEST_SECRET_X"):
        resolve_secret(SecretRef(env="EMPIRE_TEST_SECRET_X"))


def test_file_reference(tmp_path: Path) -> None:
    p = tmp_path / "hook"
    p.write_text("https://hooks.example.com/abc\n")
    assert resolve_secret_value(SecretRef(file=str(p))) == "https://hooks.example.com/abc"
    with pytest.raises(ConfigError, match="no such secret file") as info:
        resolve_secret(SecretRef(file=str(p) + ".missing"))
    assert f"file:{p}.missing" in str(info.value)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_secret(SecretRef(file=str(tmp_path / "empty")))


def test_kubernetes_reference_needs_the_reader_and_names_the_secret_not_the_value() -> None:
    ref = SecretRef.model_validate({"secret": {"name": "music-api", "key": "key-2"}})
    with pytest.raises(ConfigError, match=r"secret:music-api/key-2.*in-cluster reader"):
        resolve_secret(ref)
    assert resolve_secret(ref, kubernetes=kube()).get_secret_value() == VALUE
    with pytest.raises(ConfigError, match="secret:music-api/key-2") as info:
        resolve_secret(ref, kubernetes=kube({"other": VALUE}))
    assert VALUE not in str(info.value) and "no key 'key-2'" in str(info.value)
    with pytest.raises(PermanentError, match="refused"):  # RBAC: the reader's own classification stays
        resolve_secret(ref, kubernetes=kube(status=403))


def test_pools_resolve_provider_keys_through_it() -> None:
    policy = parse_policy({"providers": [{
        "name": "api", "kind": "http", "http": {"submit_url": "https://api.example/v1/jobs"},
        "accounts": [{"name": "a", "api_key": {"secret": {"name": "music-api", "key": "key-2"}}},
                     {"name": "b", "api_key": {"env": "B_KEY"}}],
    }]})  # fmt: skip
    with pytest.raises(ConfigError, match="secret:music-api/key-2"):
        build_adapters(policy.providers, env={"B_KEY": "b-key-value"})
    adapter = build_adapters(policy.providers, env={"B_KEY": "b-key-value"}, kubernetes=kube())["api"]
    assert adapter._headers("a", "https://api.example/v1/jobs") == {"Authorization": f"Bearer {VALUE}"}
    assert VALUE not in repr(adapter)


def test_alerting_resolves_through_it_and_redacts_http_logs(caplog: pytest.LogCaptureFixture) -> None:
    ref = SecretRef.model_validate({"secret": {"name": "slack", "key": "url"}})
    url = "https://hooks.example.com/services/T0/B0/secretpath1234"
    assert resolver(kube({"url": url}))(ref) == url
    with pytest.raises(ConfigError, match="secret:slack/url"):
        alerting_resolve(ref)  # no reader: the same message as everywhere
    caplog.set_level(logging.INFO, logger="httpx")
    logging.getLogger("httpx").info("HTTP Request: POST %s", url)
    assert "secretpath1234" not in caplog.text and "<redacted>" in caplog.text
    redact_in_logs("short")  # too short to redact safely: ignored, not an error
