"""Alertmanager receiver: `POST <url>/api/v2/alerts`, so teams that run Alertmanager keep their routing.

Each alert becomes a postable alert (`labels`, `annotations`, `startsAt`, `endsAt`,
`generatorURL`). A firing alert is sent with `endsAt` = the notification's `expiresAt` (the time
by which the dispatcher will have repeated it if it still fires), as Prometheus does, so
Alertmanager neither resolves it early nor keeps it forever if empire stops; a resolved alert is
sent with its real `endsAt`, which resolves it in Alertmanager at once. Alertmanager deduplicates
by label set, so a retried POST does no harm. Basic auth (`username`, `password` as a secret
reference) is resolved at send time; the policy refuses `user:password@` in the URL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from empire.agent.alerting.notification import Notification
from empire.agent.alerting.receivers.common import classify_response, classify_transport_error
from empire.config.urls import mask_url

__all__ = ["AlertmanagerReceiver", "postable_alerts"]


def _iso(dt: Any) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def postable_alerts(n: Notification) -> list[dict[str, Any]]:
    out = []
    for a in n.alerts:
        item: dict[str, Any] = {
            "labels": {k: str(v) for k, v in a.labels.items()},
            "annotations": {k: str(v) for k, v in a.annotations.items()},
            "startsAt": _iso(a.starts_at),
            "endsAt": _iso(a.ends_at if a.ends_at is not None else n.expires_at),
        }
        link = a.annotations.get("link")
        if link:
            item["generatorURL"] = link
        out.append(item)
    return out


class AlertmanagerReceiver:
    """`AlertSink` posting to an Alertmanager's v2 API."""

    def __init__(
        self,
        name: str,
        url: str,
        client: httpx.AsyncClient,
        username: str | None = None,
        password: Callable[[], str] | None = None,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self._client = client
        self._username, self._password = username, password  # the password is resolved per send

    def __repr__(self) -> str:
        return f"AlertmanagerReceiver({self.name!r}, {mask_url(self.url)!r})"

    async def send(self, notification: Notification) -> None:
        what = f"alertmanager receiver {self.name}"
        auth = httpx.BasicAuth(self._username, self._password()) if self._username and self._password else None
        try:
            response = await self._client.post(self.url, json=postable_alerts(notification), auth=auth)
        except httpx.HTTPError as exc:
            raise classify_transport_error(what, exc) from None
        classify_response(what, response)

    async def aclose(self) -> None:
        return None
