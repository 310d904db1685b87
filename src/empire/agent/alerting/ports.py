"""The alerting area's ports: what it needs from the outside, as small Protocols.

`AlertSink` is a receiver (implemented in `receivers/`). The area's ports live in the area, not in
`empire.agent.ports`, so the core ports never name an area's types (an `.importlinter` layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from empire.agent.alerting.notification import Notification

__all__ = ["AlertSink"]


@runtime_checkable
class AlertSink(Protocol):
    """An alert receiver (Slack webhook, email, Alertmanager, the dashboard), named as in the policy.

    `send` delivers one grouped notification or raises `TemporaryError` (the outbox retries it with
    backoff, honouring `delay`) / `PermanentError` (marked failed; retrying cannot help). It must be
    safe to call again with the same notification (delivery is at least once)."""

    name: str

    async def send(self, notification: Notification) -> None: ...

    async def aclose(self) -> None: ...
