"""Reading the Kubernetes Secrets a policy names (httpx MockTransport standing in for the API)."""

from __future__ import annotations

import base64

import httpx
import pytest

from empire.agent.kube.kubeconfig import ClusterConfig
from empire.agent.kube.kubesecrets import KubernetesSecretReader
from empire.errors import ConfigError, PermanentError, TemporaryError

VALUE = "sk-live-do-not-print"


class Api:
    def __init__(self, status: int = 200, data: dict | None = None) -> None:
        self.status, self.calls = status, []
        self.data = {"key-2": base64.b64encode(VALUE.encode()).decode()} if data is None else data

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path, request.headers.get("Authorization")))
        if self.status != 200:
            return httpx.Response(self.status, json={"kind": "Status", "message": "nope"})
        return httpx.Response(200, json={"kind": "Secret", "data": self.data})


def reader(api: Api, now: list[float] | None = None) -> KubernetesSecretReader:
    clock = now or [0.0]
    config = ClusterConfig(server="https://k8s.example", source="test", token="t0ken")
    return KubernetesSecretReader(config, "empire", ttl=60, transport=httpx.MockTransport(api), clock=lambda: clock[0])


def test_reads_and_decodes_one_key_with_the_service_account_token() -> None:
    api = Api()
    assert reader(api)("music-api", "key-2") == VALUE
    assert api.calls == [("GET", "/api/v1/namespaces/empire/secrets/music-api", "Bearer t0ken")]


def test_values_are_cached_for_the_ttl_then_read_again() -> None:
    api, now = Api(), [0.0]
    r = reader(api, now)
    r("music-api", "key-2")
    now[0] = 59
    r("music-api", "key-2")
    assert len(api.calls) == 1
    now[0] = 61
    r("music-api", "key-2")
    assert len(api.calls) == 2


def test_errors_name_the_secret_never_the_value() -> None:
    with pytest.raises(ConfigError, match=r"Secret empire/music-api has no key 'key-9' \(keys: key-2\)") as e:
        reader(Api())("music-api", "key-9")
    assert VALUE not in str(e.value)
    with pytest.raises(ConfigError, match="does not exist"):
        reader(Api(404))("music-api", "key-2")
    with pytest.raises(PermanentError, match=r'resourceNames: \["music-api"\], verbs: \["get"\]'):
        reader(Api(403))("music-api", "key-2")
    with pytest.raises(TemporaryError):
        reader(Api(503))("music-api", "key-2")
    with pytest.raises(ConfigError, match="not base64"):
        reader(Api(data={"k": "%%%"}))("music-api", "k")
    assert "t0ken" not in repr(reader(Api()))
