"""Alerting: rules that raise alerts, a routing tree like Alertmanager's, and receivers.

The routing vocabulary (`matchers`, `group_by`, `group_wait`, `group_interval`,
`repeat_interval`, `continue`, inhibit rules) is Alertmanager's, so a team that runs Alertmanager
can move routes between the two without translation. Seed routing: critical -> Slack,
warning -> email, info -> the built-in dashboard.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from empire.policies.common import Name, SecretRef, StrictModel, Url
from empire.policies.durations import Duration
from empire.policies.errors import Issue, raise_issues, unknown_choice

__all__ = [
    "AlertRule",
    "AlertingPolicy",
    "EmailReceiver",
    "InhibitRule",
    "Receiver",
    "Remediation",
    "Route",
    "RuleKind",
    "Severity",
    "parse_matcher",
]

_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_FIXED_LABELS = frozenset({"alertname", "target", "signal", "severity"})
_MATCHER_RE = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')


def parse_matcher(text: str) -> tuple[str, str, str]:
    """`severity="critical"` -> ("severity", "=", "critical"); operators = != =~ !~."""
    m = _MATCHER_RE.match(text)
    if not m:
        raise ValueError(f'invalid matcher {text!r}: use label="value" (operators: =, !=, =~, !~)')
    name, op, value = m.groups()
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression in matcher {text!r}: {exc}") from None
    return name, op, value


def _check_matchers(v: tuple[str, ...]) -> tuple[str, ...]:
    for m in v:
        parse_matcher(m)
    return v


class Severity(StrEnum):
    critical = "critical"
    warning = "warning"
    info = "info"


class SlackReceiver(StrictModel):
    """A Slack incoming webhook."""

    webhook_url: SecretRef = Field(description="the incoming-webhook URL is a secret")
    channel: str | None = Field(default=None, description="overrides the webhook's channel")


class EmailReceiver(StrictModel):
    """Mail through an SMTP server."""

    to: tuple[str, ...] = Field(min_length=1, description="recipient addresses")
    sender: str = Field(alias="from", description="sender address")
    smarthost: str = Field(description="host:port of the SMTP server")
    starttls: bool = Field(default=True, description="upgrade the SMTP connection with STARTTLS")
    username: str | None = Field(default=None, description="SMTP login")
    password: SecretRef | None = Field(default=None, description="SMTP password, with username")

    @field_validator("smarthost")
    @classmethod
    def _hostport(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdecimal():
            raise ValueError(f"smarthost must be host:port, got {v!r}")
        return v


class AlertmanagerReceiver(StrictModel):
    """An Alertmanager: alerts are forwarded to its API, which routes them itself."""

    url: Url = Field(description="base URL; alerts are POSTed to <url>/api/v2/alerts")
    username: str | None = Field(default=None, description="basic auth (an Alertmanager behind a proxy)")
    password: SecretRef | None = Field(default=None, description="basic auth password, with username")

    @model_validator(mode="after")
    def _auth_pair(self) -> AlertmanagerReceiver:
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password (a secret reference)")
        return self


class DashboardReceiver(StrictModel):
    """The built-in dashboard: state DB, the /alerts endpoint and the alerts metric."""


class Receiver(StrictModel):
    """Where notifications go: exactly one of slack, email, alertmanager, dashboard."""

    name: Name
    slack: SlackReceiver | None = Field(default=None, description="a Slack incoming webhook")
    email: EmailReceiver | None = Field(default=None, description="mail through an SMTP server")
    alertmanager: AlertmanagerReceiver | None = Field(default=None, description="an Alertmanager's API")
    dashboard: DashboardReceiver | None = Field(default=None, description="the built-in dashboard")

    @model_validator(mode="after")
    def _one_kind(self) -> Receiver:
        kinds = [k for k in ("slack", "email", "alertmanager", "dashboard") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"a receiver needs exactly one of slack, email, alertmanager, dashboard (got {kinds or 'none'})"
            )
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("slack", "email", "alertmanager", "dashboard") if getattr(self, k) is not None)


class Route(StrictModel):
    """A node of the routing tree (Alertmanager's): the first matching child route wins."""

    receiver: Name | None = Field(default=None, description="inherited from the parent when omitted")
    matchers: tuple[str, ...] = Field(default=(), description='label matchers, e.g. severity="critical"')
    group_by: tuple[str, ...] | None = Field(default=None, description="labels that group alerts into one notification")
    group_wait: Duration | None = Field(default=None, description="wait before the first notification of a group")
    group_interval: Duration | None = Field(default=None, description="wait before notifying a group's changes")
    repeat_interval: Duration | None = Field(default=None, description="wait before repeating an unchanged group")
    continue_: bool = Field(default=False, alias="continue", description="keep matching the next sibling routes")
    routes: tuple[Route, ...] = Field(default=(), description="child routes")

    _v_matchers = field_validator("matchers")(_check_matchers)

    def receivers(self) -> set[str]:
        out = {self.receiver} if self.receiver else set()
        for r in self.routes:
            out |= r.receivers()
        return out


def _default_route() -> Route:
    return Route(
        receiver="dashboard",
        group_by=("alertname", "target"),
        group_wait=timedelta(seconds=30),
        group_interval=timedelta(minutes=5),
        repeat_interval=timedelta(hours=4),
    )


class InhibitRule(StrictModel):
    """Mute alerts matching target_matchers while one matching source_matchers fires."""

    source_matchers: tuple[str, ...] = Field(min_length=1, description="the alert that mutes")
    target_matchers: tuple[str, ...] = Field(min_length=1, description="the alerts it mutes")
    equal: tuple[str, ...] = Field(default=(), description="labels both must share")

    _v_src = field_validator("source_matchers")(_check_matchers)
    _v_dst = field_validator("target_matchers")(_check_matchers)


class RuleKind(StrEnum):
    anomaly = "anomaly"
    threshold = "threshold"
    predicted_breach = "predicted_breach"


class ScaleRemediation(StrictModel):
    """Scale a target while the alert fires: to `replicas`, or `by` a relative change."""

    target: Name
    replicas: int | None = Field(default=None, ge=0, description="absolute replica count")
    by: int | None = Field(default=None, description="relative change, e.g. 2 or -1")

    @model_validator(mode="after")
    def _one(self) -> ScaleRemediation:
        if (self.replicas is None) == (self.by is None):
            raise ValueError("scale needs exactly one of replicas, by")
        return self


class DrainRemediation(StrictModel):
    """Stop sending jobs to one account while the alert fires."""

    provider: Name
    account: Name


class Remediation(StrictModel):
    """What the agent does by itself while the alert fires (one action)."""

    scale: ScaleRemediation | None = None
    pause_persona: Name | None = None
    drain_account: DrainRemediation | None = None

    @model_validator(mode="after")
    def _one(self) -> Remediation:
        given = [k for k in ("scale", "pause_persona", "drain_account") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a remediation names exactly one of scale, pause_persona, drain_account (got {given or 'none'})"
            )
        return self


class AlertRule(StrictModel):
    """An alert on one signal of one target: an anomaly, a threshold, or a predicted breach."""

    name: Name
    kind: RuleKind = Field(description="anomaly, threshold or predicted_breach")
    target: Name = Field(description="the scaling target whose signal is watched")
    signal: Name = Field(description="signal of that target")
    threshold: float = Field(description="anomaly score (0-1) for 'anomaly'; a signal value otherwise")
    direction: Literal["above", "below"] = Field(default="above", description="which side of threshold fires")
    horizon: Duration = Field(default=timedelta(minutes=60), description="for predicted_breach")
    for_: Duration = Field(default=timedelta(0), alias="for", description="condition must hold this long")
    keep_firing_for: Duration | None = Field(
        default=None,
        description="keep firing this long after the condition clears (default: 15m for anomaly rules, "
        "whose score flags single points, else 0)",
    )
    severity: Severity = Field(default=Severity.warning, description="critical, warning or info: routes on it")
    summary: str = Field(default="", description="'{target}', '{signal}', '{value}' are filled in")
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels, e.g. team; routes match on them")
    remediation: Remediation | None = Field(default=None, description="an action taken while it fires")

    @field_validator("labels")
    @classmethod
    def _label_names(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not _LABEL_RE.match(k):
                raise ValueError(f"label name {k!r} must match [a-zA-Z_][a-zA-Z0-9_]* (as in Prometheus)")
            if k in _FIXED_LABELS:
                raise ValueError(f"label {k!r} is set by empire (alertname, target, signal, severity)")
        return v

    @model_validator(mode="after")
    def _anomaly_range(self) -> AlertRule:
        if self.kind == RuleKind.anomaly and not 0 < self.threshold < 1:
            raise ValueError("an anomaly rule's threshold is a score between 0 and 1 (exclusive)")
        return self


class AlertingPolicy(StrictModel):
    """Alert rules on the agent's signals, and Alertmanager-style routing of their notifications."""

    receivers: tuple[Receiver, ...] = Field(
        default=(Receiver(name="dashboard", dashboard=DashboardReceiver()),),
        max_length=50,
        description="where notifications go",
    )
    route: Route = Field(default_factory=_default_route, description="the routing tree's root")
    inhibit_rules: tuple[InhibitRule, ...] = Field(
        description="mute lesser alerts while a graver one fires",
        default=(
            InhibitRule(
                source_matchers=('severity="critical"',),
                target_matchers=('severity="warning"',),
                equal=("alertname", "target"),
            ),
        ),
    )
    rules: tuple[AlertRule, ...] = Field(
        default=(), max_length=500, description="alerts on anomalies, thresholds and forecasts"
    )
    resolve_timeout: Duration = Field(
        default=timedelta(minutes=5),
        description="a firing alert whose signal has no data for this long is resolved",
    )
    external_url: Url | None = Field(
        default=None,
        description="the agent's HTTP address as people reach it; alerts then link to <external_url>/alerts",
    )

    @model_validator(mode="after")
    def _checks(self) -> AlertingPolicy:
        names = [r.name for r in self.receivers]
        issues: list[Issue] = []
        if self.route.receiver is None:
            issues.append(
                Issue("route.receiver", f"required at the root of the routing tree (valid: {', '.join(names)})")
            )
        issues.extend(_route_issues(self.route, "route", names))
        if issues:
            raise_issues(issues)
        return self


def _route_issues(route: Route, path: str, receivers: list[str]) -> list[Issue]:
    """Every route (depth first, in file order) whose receiver is not defined, at its exact path."""
    out: list[Issue] = []
    if route.receiver is not None and route.receiver not in receivers:
        out.append(Issue(f"{path}.receiver", unknown_choice("receiver", route.receiver, receivers)))
    for i, child in enumerate(route.routes):
        out.extend(_route_issues(child, f"{path}.routes[{i}]", receivers))
    return out
