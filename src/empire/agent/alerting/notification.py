"""Alerts and notifications as values: what the dispatcher groups and the outbox stores. PURE.

A `Notification` is the unit of delivery: one receiver, one group, the group's alerts at one
instant (firing first, then resolved). It is stored as JSON in the `notifications` outbox table
(`payload()` / `from_payload()`), so a notification queued while a receiver is down is delivered
byte-for-byte the same after a restart. The payload follows Alertmanager's webhook format
(`receiver`, `status`, `groupLabels`, `alerts[]` with `labels`, `annotations`, `startsAt`,
`endsAt`, `fingerprint`), which receivers and humans already know. It never holds a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["AlertInstance", "Notification", "explain_command", "render_text", "title"]


def explain_command(target: str) -> str:
    return f"empire explain {target}"


@dataclass(frozen=True)
class AlertInstance:
    """One alert as stored in the `alerts` table: firing until `ends_at` is set."""

    fingerprint: str
    rule: str
    severity: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime | None = None
    value: float | None = None
    updated_at: datetime | None = None
    id: int | None = None

    @property
    def firing(self) -> bool:
        return self.ends_at is None

    @property
    def status(self) -> str:
        return "firing" if self.firing else "resolved"

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint, "rule": self.rule, "severity": self.severity, "status": self.status,
            "labels": dict(self.labels), "annotations": dict(self.annotations),
            "startsAt": self.starts_at.isoformat(), "endsAt": self.ends_at.isoformat() if self.ends_at else None,
            "value": self.value,
        }  # fmt: skip

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> AlertInstance:
        return cls(
            fingerprint=d["fingerprint"], rule=d.get("rule", d["labels"].get("alertname", "")),
            severity=d.get("severity", d["labels"].get("severity", "")), labels=dict(d["labels"]),
            annotations=dict(d.get("annotations") or {}), starts_at=datetime.fromisoformat(d["startsAt"]),
            ends_at=datetime.fromisoformat(d["endsAt"]) if d.get("endsAt") else None, value=d.get("value"),
        )  # fmt: skip


@dataclass(frozen=True)
class Notification:
    """What one receiver is told about one group at one instant."""

    receiver: str
    group_key: str
    group_labels: Mapping[str, str]
    alerts: tuple[AlertInstance, ...]
    at: datetime
    expires_at: datetime  # a firing alert not re-notified by then may be considered resolved
    route: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return "firing" if any(a.firing for a in self.alerts) else "resolved"

    @property
    def firing(self) -> tuple[AlertInstance, ...]:
        return tuple(a for a in self.alerts if a.firing)

    @property
    def resolved(self) -> tuple[AlertInstance, ...]:
        return tuple(a for a in self.alerts if not a.firing)

    def payload(self) -> dict[str, Any]:
        common = {k: v for k, v in self.alerts[0].labels.items()} if self.alerts else {}
        for a in self.alerts[1:]:
            common = {k: v for k, v in common.items() if a.labels.get(k) == v}
        return {
            "version": "4", "receiver": self.receiver, "status": self.status, "groupKey": self.group_key,
            "groupLabels": dict(self.group_labels), "commonLabels": common, "route": self.route,
            "at": self.at.isoformat(), "expiresAt": self.expires_at.isoformat(),
            "alerts": [a.to_json() for a in self.alerts], **dict(self.extra),
        }  # fmt: skip

    @classmethod
    def from_payload(cls, p: Mapping[str, Any]) -> Notification:
        return cls(
            receiver=p["receiver"], group_key=p["groupKey"], group_labels=dict(p.get("groupLabels") or {}),
            alerts=tuple(AlertInstance.from_json(a) for a in p.get("alerts") or ()),
            at=datetime.fromisoformat(p["at"]), expires_at=datetime.fromisoformat(p["expiresAt"]),
            route=p.get("route", ""),
        )  # fmt: skip


def title(n: Notification) -> str:
    """`[FIRING:2] queue-anomaly (target=generator)`: Alertmanager's default title shape."""
    count = len(n.firing) if n.status == "firing" else len(n.resolved)
    names = sorted({a.labels.get("alertname", a.rule) for a in n.alerts})
    rest = ", ".join(f"{k}={v}" for k, v in sorted(n.group_labels.items()) if k != "alertname")
    return f"[{n.status.upper()}:{count}] {' '.join(names)}" + (f" ({rest})" if rest else "")


def _line(a: AlertInstance) -> str:
    summary = a.annotations.get("summary") or a.labels.get("alertname", a.rule)
    target = a.labels.get("target")
    parts = [f"[{a.severity}] {summary}"]
    if a.firing:
        parts.append(f"since {a.starts_at:%Y-%m-%d %H:%M:%S}Z")
    else:
        parts.append(f"resolved {a.ends_at:%Y-%m-%d %H:%M:%S}Z" if a.ends_at else "resolved")
    if target:
        parts.append(f"explain: {a.annotations.get('explain') or explain_command(target)}")
    if a.annotations.get("link"):
        parts.append(a.annotations["link"])
    return " | ".join(parts)


def render_text(n: Notification) -> str:
    """A plain-text body: one line per alert, firing first."""
    lines = [title(n), ""]
    if n.firing:
        lines.append("Firing:")
        lines.extend(f"- {_line(a)}" for a in n.firing)
    if n.resolved:
        lines.append("Resolved:")
        lines.extend(f"- {_line(a)}" for a in n.resolved)
    return "\n".join(lines)
