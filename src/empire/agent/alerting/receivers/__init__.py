"""Receivers (`alerting.ports.AlertSink`): Slack webhook, email, Alertmanager and the built-in dashboard.

`build_receivers(policy, client)` turns the policy's `receivers[]` into sinks. Secrets are looked
up at send time through `resolver` (default: `env` and `file` references).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx

from empire.agent.alerting.notification import Notification
from empire.agent.alerting.ports import AlertSink
from empire.agent.alerting.receivers.alertmanager import AlertmanagerReceiver
from empire.agent.alerting.receivers.email import EmailReceiver
from empire.agent.alerting.receivers.slack import SlackReceiver
from empire.agent.alerting.secrets import SecretResolver, resolve_secret
from empire.policies.alerting import AlertingPolicy
from empire.policies.common import SecretRef

__all__ = ["AlertmanagerReceiver", "DashboardReceiver", "EmailReceiver", "SlackReceiver", "build_receivers"]


class DashboardReceiver:
    """The built-in dashboard: the alert is already in the state DB, on `/alerts` and in the metrics,
    so "delivering" a notification is recording that it was shown."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def send(self, notification: Notification) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _lazy(resolver: SecretResolver, ref: SecretRef) -> Callable[[], str]:
    return lambda: resolver(ref)


def build_receivers(
    policy: AlertingPolicy,
    client: httpx.AsyncClient,
    resolver: SecretResolver = resolve_secret,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, AlertSink]:
    out: dict[str, AlertSink] = {}
    for r in policy.receivers:
        if r.slack is not None:
            out[r.name] = SlackReceiver(r.name, _lazy(resolver, r.slack.webhook_url), client, r.slack.channel)
        elif r.email is not None:
            pw = _lazy(resolver, r.email.password) if r.email.password is not None else None
            out[r.name] = EmailReceiver(r.name, r.email, pw, ssl_context)
        elif r.alertmanager is not None:
            am = r.alertmanager
            secret = _lazy(resolver, am.password) if am.password is not None else None
            out[r.name] = AlertmanagerReceiver(r.name, am.url, client, am.username, secret)
        else:
            out[r.name] = DashboardReceiver(r.name)
    return out
