"""Slack incoming-webhook receiver.

Slack's incoming webhook takes `{"text": ...}` (mrkdwn) and answers 200 `ok`; 429 with
`Retry-After` when rate limited; 400/403/404 (`invalid_payload`, `action_prohibited`,
`no_service`) when retrying cannot help. The webhook URL is the credential: it is resolved at
send time, kept out of every message, and redacted from httpx's request log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx

from empire.agent.alerting.notification import Notification, explain_command, title
from empire.agent.alerting.receivers.common import classify_response, classify_transport_error

__all__ = ["SlackReceiver", "slack_message"]

logger = logging.getLogger(__name__)

_ICON = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def _esc(text: str) -> str:
    """Slack's three control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(n: Notification, channel: str | None = None) -> dict[str, Any]:
    """The webhook body: a title line and one line per alert (firing first)."""
    lines = [f"*{_esc(title(n))}*"]
    for a in n.alerts:
        icon = ":white_check_mark:" if not a.firing else _ICON.get(a.severity, ":bell:")
        summary = a.annotations.get("summary") or a.labels.get("alertname", a.rule)
        line = f"{icon} *{a.severity}* {_esc(summary)}"
        target = a.labels.get("target")
        if target:
            line += f" — `{a.annotations.get('explain') or explain_command(target)}`"
        if a.annotations.get("link"):
            line += f" <{a.annotations['link']}|details>"
        if not a.firing:
            line += " (resolved)"
        lines.append(line)
    body: dict[str, Any] = {"text": "\n".join(lines)}
    if channel:
        body["channel"] = channel
    return body


class SlackReceiver:
    """`AlertSink` posting to a Slack incoming webhook."""

    def __init__(self, name: str, webhook_url: Callable[[], str], client: httpx.AsyncClient,
                 channel: str | None = None) -> None:  # fmt: skip
        self.name = name
        self._url = webhook_url  # resolved per send: rotation without reload, never stored
        self._client = client
        self.channel = channel

    def __repr__(self) -> str:
        return f"SlackReceiver({self.name!r})"

    async def send(self, notification: Notification) -> None:
        what = f"slack receiver {self.name}"
        url = self._url()
        try:
            response = await self._client.post(url, json=slack_message(notification, self.channel))
        except httpx.HTTPError as exc:
            raise classify_transport_error(what, exc) from None
        classify_response(what, response)

    async def aclose(self) -> None:
        return None
