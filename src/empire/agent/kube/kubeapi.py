"""`KubeApi`: one httpx client of the API server with the agent's error classification.

Why one class: the scaler, API discovery, the Event recorder and the conflict check all talk to the
same API server and must classify its answers the same way (`empire.errors`):

    409                   ApiConflict (a TemporaryError with no delay: re-read, then write again)
    429, 5xx, transport   TemporaryError (Retry-After honoured)
    401, 403              PermanentError that spells out the RBAC rule to add
    404                   NotFoundError
    other 4xx             PermanentError

A request names the RBAC attributes it needs (`Rbac`), so a 403 says exactly which rule is missing
instead of echoing the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from empire.agent.httpretry import parse_retry_after, transport_error
from empire.agent.kube.kubeconfig import ClusterConfig
from empire.config.urls import mask_url
from empire.errors import NotFoundError, PermanentError, TemporaryError

__all__ = ["ApiConflict", "KubeApi", "Rbac"]


class ApiConflict(TemporaryError):
    """409: someone else changed the object since it was read (or it exists already)."""


@dataclass(frozen=True)
class Rbac:
    """What RBAC authorizes for one request, to name the missing rule on a 403."""

    group: str
    resource: str  # with "/subresource" when there is one
    verb: str
    namespace: str | None = None

    def hint(self) -> str:
        where = f'a Role in namespace "{self.namespace}"' if self.namespace else "a ClusterRole"
        extra = ' (and "get" on it)' if self.verb == "patch" else ""
        return (
            f'The agent\'s service account needs {where} with the rule: apiGroups: ["{self.group}"], '
            f'resources: ["{self.resource}"], verbs: ["{self.verb}"]{extra}'
        )


class KubeApi:
    def __init__(self, config: ClusterConfig, *, timeout: float = 10.0, transport: Any = None) -> None:
        self.config = config
        self._client = httpx.AsyncClient(**config.client_options(timeout, transport))

    def __repr__(self) -> str:
        return f"KubeApi({mask_url(self.config.server)!r}, {self.config.source})"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        rbac: Rbac | None = None,
        body: dict[str, Any] | None = None,
        *,
        content_type: str = "application/merge-patch+json",
    ) -> dict[str, Any]:
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            resp = await self._client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise transport_error(exc, f"kubernetes API {mask_url(self.config.server)}") from None
        code = resp.status_code
        if code < 300:
            try:
                out = resp.json()
            except ValueError:
                raise TemporaryError(f"kubernetes API answered {code} with a non-JSON body") from None
            return out if isinstance(out, dict) else {}
        message = status_message(resp)
        if code == 409:
            raise ApiConflict(f"conflict on {path}: {message}", delay=0.0)
        if code == 429 or code >= 500:
            raise TemporaryError(f"kubernetes API answered {code} for {path}: {message}",
                                 delay=parse_retry_after(resp.headers.get("Retry-After")))  # fmt: skip
        if code in (401, 403):
            hint = f" {rbac.hint()}" if rbac is not None else ""
            verb = rbac.verb if rbac is not None else method
            raise PermanentError(f"kubernetes API refused {verb} {path} ({code}): {message}.{hint}")
        if code == 404:
            raise NotFoundError(f"{path} not found ({message})")
        raise PermanentError(f"kubernetes API answered {code} for {method} {path}: {message}")


def status_message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
        return str(body.get("message") or body.get("reason") or resp.reason_phrase)
    except (ValueError, AttributeError):
        return resp.text[:200] or resp.reason_phrase
