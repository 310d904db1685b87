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
    webhook_url: SecretRef = Field(description="the incoming-webhook URL is a secret")
    channel: str | None = None


class EmailReceiver(StrictModel):
    to: tuple[str, ...] = Field(min_length=1)
    sender: str = Field(alias="from")
    smarthost: str = Field(description="host:port of the SMTP server")
    starttls: bool = True
    username: str | None = None
    password: SecretRef | None = None

    @field_validator("smarthost")
    @classmethod
    def _hostport(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"smarthost must be host:port, got {v!r}")
        return v


class AlertmanagerReceiver(StrictModel):
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
    name: Name
    slack: SlackReceiver | None = None
    email: EmailReceiver | None = None
    alertmanager: AlertmanagerReceiver | None = None
    dashboard: DashboardReceiver | None = None

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
    receiver: Name | None = Field(default=None, description="inherited from the parent when omitted")
    matchers: tuple[str, ...] = ()
    group_by: tuple[str, ...] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue")
    routes: tuple[Route, ...] = ()

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
    source_matchers: tuple[str, ...] = Field(min_length=1)
    target_matchers: tuple[str, ...] = Field(min_length=1)
    equal: tuple[str, ...] = ()

    _v_src = field_validator("source_matchers")(_check_matchers)
    _v_dst = field_validator("target_matchers")(_check_matchers)


class RuleKind(StrEnum):
    anomaly = "anomaly"
    threshold = "threshold"
    predicted_breach = "predicted_breach"


class ScaleRemediation(StrictModel):
    target: Name
    replicas: int | None = Field(default=None, ge=0)
    by: int | None = Field(default=None, description="relative change, e.g. 2 or -1")

    @model_validator(mode="after")
    def _one(self) -> ScaleRemediation:
        if (self.replicas is None) == (self.by is None):
            raise ValueError("scale needs exactly one of replicas, by")
        return self


class DrainRemediation(StrictModel):
    provider: Name
    account: Name


class Remediation(StrictModel):
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
    name: Name
    kind: RuleKind
    target: Name = Field(description="the scaling target whose signal is watched")
    signal: Name = Field(description="signal of that target")
    threshold: float = Field(description="anomaly score (0-1) for 'anomaly'; a signal value otherwise")
    direction: Literal["above", "below"] = "above"
    horizon: Duration = Field(default=timedelta(minutes=60), description="for predicted_breach")
    for_: Duration = Field(default=timedelta(0), alias="for", description="condition must hold this long")
    keep_firing_for: Duration | None = Field(
        default=None,
        description="keep firing this long after the condition clears (default: 15m for anomaly rules, "
        "whose score flags single points, else 0)",
    )
    severity: Severity = Severity.warning
    summary: str = Field(default="", description="'{target}', '{signal}', '{value}' are filled in")
    labels: dict[str, str] = Field(default_factory=dict)
    remediation: Remediation | None = None

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
    receivers: tuple[Receiver, ...] = Field(default=(Receiver(name="dashboard", dashboard=DashboardReceiver()),))
    route: Route = Field(default_factory=_default_route)
    inhibit_rules: tuple[InhibitRule, ...] = (
        InhibitRule(
            source_matchers=('severity="critical"',),
            target_matchers=('severity="warning"',),
            equal=("alertname", "target"),
        ),
    )
    rules: tuple[AlertRule, ...] = ()
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
