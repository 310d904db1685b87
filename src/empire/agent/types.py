"""The agent's vocabulary: actions it can take and the reasons it gives. PURE: values only.

Every action carries the `Reason`s that produced it, and `Reason` is a closed enum: the same value
reaches the log line, the `reason` label of the metrics (a closed label set), the journal row in
the state DB and the EmpireConfig status, so "why did it do that?" has one answer everywhere.
Add a member here when a new rule can change an outcome; never pass free text as a reason (free
text goes in `details`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

__all__ = [
    "AREA_LABEL",
    "Action",
    "Alert",
    "BackupDb",
    "Decision",
    "DrainAccount",
    "ErrorClass",
    "Forecast",
    "Generate",
    "Observation",
    "Outcome",
    "OutcomeStatus",
    "PausePersona",
    "PruneBackup",
    "ReadBack",
    "Reason",
    "Recommendation",
    "Retier",
    "Sample",
    "SampleStatus",
    "ScaleTo",
    "SignalEstimate",
    "WorkloadState",
    "action_key",
    "error_class",
]


class Reason(StrEnum):
    # -- scaling: the raw recommendation
    above_target = "above_target"  # a signal over its target asked for more replicas
    below_target = "below_target"  # every signal under target: fewer replicas
    within_tolerance = "within_tolerance"  # ratio inside the dead band: keep current
    predicted_demand = "predicted_demand"  # the forecast asked for more than the reactive signals
    forecast_only = "forecast_only"  # the forecast asked for more, recorded only (predictive mode forecast_only)
    forecast_unproven = "forecast_unproven"  # the guard has no evidence that the forecast beats reactive: not acted on
    forecast_skill_lost = "forecast_skill_lost"  # recent forecasts missed too often: not acted on
    # -- scaling: safety rules
    signal_missing = "signal_missing"  # no value: never scale down on it
    signal_stale = "signal_stale"
    signal_invalid = "signal_invalid"  # NaN, inf, negative
    scale_down_blocked = "scale_down_blocked"  # a bad signal forbade scaling down
    metrics_unavailable = "metrics_unavailable"  # the metric source itself failed
    fallback_hold = "fallback_hold"
    fallback_fixed = "fallback_fixed"
    paused = "paused"
    pinned = "pinned"
    startup_grace = "startup_grace"
    # -- scaling: stabilization (HPA behavior)
    stabilized_up = "stabilized_up"  # scale-up window held the recommendation down
    stabilized_down = "stabilized_down"  # scale-down window held it up
    rate_limited_up = "rate_limited_up"
    rate_limited_down = "rate_limited_down"
    scaling_disabled = "scaling_disabled"  # select: disabled in that direction
    clamped_min = "clamped_min"
    clamped_max = "clamped_max"
    early_scale_down = "early_scale_down"  # a trusted forecast's shorter scale-down window let it scale down sooner
    max_capacity_breach = "max_capacity_breach"  # forecast above max_replicas, buffer allowed
    no_change = "no_change"
    # -- execution
    dry_run = "dry_run"
    not_leader = "not_leader"
    state_db_down = "state_db_down"  # the state DB cannot journal the intent: held, nothing is done
    execution_failed = "execution_failed"  # the executor raised: the error class is journaled
    reconciled = "reconciled"  # an unfinished intent found at start, settled by reading back
    workload_unknown = "workload_unknown"  # current replicas could not be read: never act blind
    conflict = "conflict"  # an HPA or a KEDA ScaledObject also targets the workload: not scaled until it is gone
    # -- generation
    release_cadence = "release_cadence"
    trend_boost = "trend_boost"
    budget_deferred = "budget_deferred"
    budget_exhausted = "budget_exhausted"
    persona_paused = "persona_paused"
    expected_return = "expected_return"  # spending by returns: the best drawn revenue per dollar got the budget
    data_floor = "data_floor"  # spending by returns: the floor that keeps every persona's revenue data fresh
    # -- storage tiering
    idle_demotion = "idle_demotion"  # the colder tier's rules (idle, age, access rate, revenue) hold
    access_promotion = "access_promotion"  # accessed since it entered a tier whose rules no longer hold
    move_recovered = "move_recovered"  # an interrupted move finished or rolled back at start
    # -- alerting and remediation
    anomaly = "anomaly"
    threshold = "threshold"
    predicted_breach = "predicted_breach"
    remediation = "remediation"
    # -- backups of the state database
    backup_schedule = "backup_schedule"  # the class's slot (hour, day, month) has no backup yet
    retention_expired = "retention_expired"  # older than the class's keep
    backup_failed = "backup_failed"
    backup_overdue = "backup_overdue"
    # -- operator / manual
    manual = "manual"


def action_key(kind: str, subject: str, at: datetime, extra: str = "") -> str:
    """A deterministic idempotency key: the same decision at the same instant yields the same key,
    so a replayed or raced intent is recognised as a duplicate by the journal."""
    stamp = at.strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{kind}:{subject}:{stamp}" + (f":{extra}" if extra else "")


@dataclass(frozen=True)
class ScaleTo:
    """Set a workload's replicas."""

    kind: ClassVar[str] = "scale"
    target: str
    namespace: str
    workload_kind: str  # any kind with a scale subresource (Deployment, StatefulSet, Rollout, ...)
    workload_name: str
    replicas: int
    current: int | None
    reasons: tuple[Reason, ...]
    workload_api_version: str | None = None  # group/version when the policy names one

    @property
    def subject(self) -> str:
        return self.target

    def params(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace, "workload_kind": self.workload_kind,
            "workload_name": self.workload_name, "replicas": self.replicas, "current": self.current,
        } | ({"workload_api_version": self.workload_api_version} if self.workload_api_version else {})  # fmt: skip


@dataclass(frozen=True)
class Generate:
    """Queue generation jobs for a persona."""

    kind: ClassVar[str] = "generate"
    persona: str
    count: int
    priority: str  # high | normal | low
    reasons: tuple[Reason, ...]
    providers: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    # The planning window (e.g. "20260101T000000Z") and the index of its first track: together they
    # make the jobs' idempotency keys ("gen/<persona>/<batch>/<n>"), so re-planning or re-running
    # the same window after a crash enqueues nothing twice.
    batch: str = ""
    first: int = 0
    # Spending by returns: per genre, why it got its tracks (reason, count, expected revenue per
    # dollar, uncertainty, the Thompson draw, trend boost), journaled with the action for `empire explain`.
    allocation: tuple[dict[str, Any], ...] = ()

    @property
    def subject(self) -> str:
        return f"persona/{self.persona}"

    def params(self) -> dict[str, Any]:
        out = {"count": self.count, "priority": self.priority, "providers": list(self.providers),
               "genres": list(self.genres), "batch": self.batch, "first": self.first}  # fmt: skip
        if self.allocation:
            out["allocation"] = [dict(a) for a in self.allocation]
        return out


@dataclass(frozen=True)
class Retier:
    """Move one content object to another storage tier."""

    kind: ClassVar[str] = "retier"
    object_id: str
    from_tier: str
    to_tier: str
    size: int
    reasons: tuple[Reason, ...]
    monthly_saving: float = 0.0

    @property
    def subject(self) -> str:
        return f"object/{self.object_id}"

    def params(self) -> dict[str, Any]:
        return {"from_tier": self.from_tier, "to_tier": self.to_tier, "size": self.size,
                "monthly_saving": self.monthly_saving}  # fmt: skip


AREA_LABEL = "area"
"""An alert raised by an area (e.g. `area=backup`), not by an alert rule, carries this label: the area
decides when it fires and resolves, so the rule engine leaves it alone after a restart."""


@dataclass(frozen=True)
class Alert:
    """Raise (or resolve) an alert."""

    kind: ClassVar[str] = "alert"
    rule: str
    severity: str  # critical | warning | info
    labels: dict[str, str]
    summary: str
    reasons: tuple[Reason, ...]
    value: float | None = None
    resolved: bool = False
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        """`alert/<rule>/<labels>`; past 200 characters the labels become a digest, so the journal's
        256-character `subject` column holds any label set."""
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        subject = f"alert/{self.rule}/{labels}"
        if len(subject) <= 200:
            return subject
        return f"alert/{self.rule[:120]}/sha256:{hashlib.sha256(labels.encode()).hexdigest()[:32]}"

    def params(self) -> dict[str, Any]:
        return {"severity": self.severity, "labels": self.labels, "summary": self.summary,
                "value": self.value, "resolved": self.resolved}  # fmt: skip


@dataclass(frozen=True)
class PausePersona:
    """Stop (or, with `paused=False`, resume) queuing generation for a persona: an alert remediation.

    An alert rule's `remediation: {pause_persona: NAME}` pauses while the alert fires and resumes
    when it resolves; the generation planner's executor carries it out."""

    kind: ClassVar[str] = "pause_persona"
    persona: str
    paused: bool
    reasons: tuple[Reason, ...]
    alert: str = ""  # the alert rule that asked for it

    @property
    def subject(self) -> str:
        return f"persona/{self.persona}"

    def params(self) -> dict[str, Any]:
        return {"persona": self.persona, "paused": self.paused, "alert": self.alert}


@dataclass(frozen=True)
class DrainAccount:
    """Stop (or, with `drained=False`, resume) routing new jobs to one provider account: an alert
    remediation. Jobs in flight on the account finish; the pool routes new ones elsewhere."""

    kind: ClassVar[str] = "drain_account"
    provider: str
    account: str
    drained: bool
    reasons: tuple[Reason, ...]
    alert: str = ""

    @property
    def subject(self) -> str:
        return f"account/{self.provider}/{self.account}"

    def params(self) -> dict[str, Any]:
        return {"provider": self.provider, "account": self.account, "drained": self.drained, "alert": self.alert}


@dataclass(frozen=True)
class BackupDb:
    """Write a backup of the state database into a storage tier (a scheduled backup's class)."""

    kind: ClassVar[str] = "backup"
    cls: str  # hourly | daily | monthly
    name: str  # artifact name, e.g. empire-20260301T120000Z.sqlite3
    slot: str  # the class's slot it fills, e.g. 2026030112
    tier: str
    location: str  # key in the tier: backups/<class>/<name>
    reasons: tuple[Reason, ...]

    @property
    def subject(self) -> str:
        return f"backup/{self.cls}"

    def params(self) -> dict[str, Any]:
        return {"class": self.cls, "name": self.name, "slot": self.slot, "tier": self.tier,
                "location": self.location}  # fmt: skip


@dataclass(frozen=True)
class PruneBackup:
    """Delete a backup its retention class no longer keeps."""

    kind: ClassVar[str] = "backup_prune"
    cls: str
    name: str
    tier: str
    location: str
    reasons: tuple[Reason, ...]

    @property
    def subject(self) -> str:
        return f"backup/{self.cls}/{self.name}"

    def params(self) -> dict[str, Any]:
        return {"class": self.cls, "name": self.name, "tier": self.tier, "location": self.location}


Action = ScaleTo | Generate | Retier | Alert | PausePersona | DrainAccount | BackupDb | PruneBackup
"""Everything the agent can do. Executors dispatch on the type."""


# ---------------------------------------------------------------------------------------------
# The loop's values: what it saw (Observation), what the signals ask for (Recommendation), what it
# decided after the safety rules and stabilization (Decision), and what happened (Outcome).


class SampleStatus(StrEnum):
    ok = "ok"
    missing = "missing"  # no series, or the query failed for this signal only
    stale = "stale"  # older than the signal's max_staleness
    invalid = "invalid"  # NaN, inf, negative, or more than one series


@dataclass(frozen=True)
class Sample:
    """One signal's latest value as the observer saw it. `staleness` is seconds between the
    sample's own timestamp and the observation instant (None when there is no sample)."""

    signal: str
    value: float | None
    at: datetime | None
    staleness: float | None
    status: SampleStatus = SampleStatus.ok
    error: str | None = None  # why the sample is not ok, for the journal (never a secret)


@dataclass(frozen=True)
class WorkloadState:
    """What the cluster says about a target's workload (scale subresource + annotations)."""

    replicas: int | None  # spec.replicas: what was asked for
    ready_replicas: int | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    resource_version: str | None = None
    error: str | None = None  # the workload could not be read
    conflicts: tuple[str, ...] = ()  # other autoscalers targeting it ("HorizontalPodAutoscaler/web")


@dataclass(frozen=True)
class Observation:
    """Everything `decide()` knows about one target at `at`."""

    target: str
    at: datetime
    samples: tuple[Sample, ...]
    current_replicas: int | None
    ready_replicas: int | None = None
    source_ok: bool = True  # False: the metric source itself failed (not one odd value)
    source_error: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    conflicts: tuple[str, ...] = ()  # other autoscalers targeting the workload: decide, never act

    def sample(self, signal: str) -> Sample | None:
        return next((s for s in self.samples if s.signal == signal), None)


class ForecastGate(StrEnum):
    """What the predictive guard (`empire.agent.guard`) lets a scaling forecast do."""

    trusted = "trusted"  # it beat reactive scaling on this workload's recent demand: it may add replicas and
    # shorten the scale-down window to `Forecast.scale_down_window`
    unproven = "unproven"  # no such evidence (yet): recorded, not acted on; reactive scaling acts
    skill_lost = "skill_lost"  # it missed too often lately, or is no better than seasonal naive: not acted on


@dataclass(frozen=True)
class Forecast:
    """Predicted demand for a target's demand signal: the `quantile` of the forecast distribution
    at `at + horizon`. Filled by the predictive model; `decide()` only reads it. It acts only when
    `gate` is `trusted` (the default is not: a forecast nobody vouched for never scales)."""

    signal: str
    value: float
    quantile: float
    horizon_seconds: float
    model: str | None = None
    # What else the forecaster wants on the record (the guard's evidence, the horizon forecast):
    # `decide()` copies it into `details["forecast"]` untouched; it never changes a decision.
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    gate: ForecastGate = ForecastGate.unproven
    scale_down_window: float | None = None  # seconds; with a trusted gate, replaces the policy's scale-down window


@dataclass(frozen=True)
class SignalEstimate:
    """What one signal asks for, before the max over signals."""

    signal: str
    value: float | None
    target: float
    type: str  # average | total
    status: SampleStatus
    replicas: int | None  # None: this signal gives no recommendation
    ratio: float | None = None
    within_tolerance: bool = False
    staleness: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """The raw recommendation (HPA's "prenormalized desired replicas") and why.

    `bypass_stabilization` is set by the rules that name an exact replica count (pin, fixed
    fallback): they skip windows and rate policies but still pass the min/max clamps.
    `hold` means: no usable information, keep `current` (the window still sees `replicas`)."""

    target: str
    at: datetime
    current: int | None
    replicas: int | None
    reasons: tuple[Reason, ...]
    estimates: tuple[SignalEstimate, ...] = ()
    forecast_replicas: int | None = None
    max_allowed: int | None = None  # max_replicas, or more under max_capacity_breach
    scale_down_window: float | None = None  # seconds: a trusted forecast's window, shorter than the policy's
    bypass_stabilization: bool = False
    hold: bool = False
    paused: bool = False
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """The outcome of decide + stabilize for one target: the desired replicas, every reason in the
    order it applied, and the actions to take (empty when nothing changes)."""

    target: str
    at: datetime
    current: int | None
    recommended: int | None
    desired: int | None
    reasons: tuple[Reason, ...]
    actions: tuple[Action, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False


class OutcomeStatus(StrEnum):
    applied = "applied"
    unchanged = "unchanged"  # nothing to write: the world already matched
    skipped = "skipped"  # dry run, paused, not leader
    failed = "failed"
    duplicate = "duplicate"  # the idempotency key was already journaled: not executed again


ErrorClass = Literal["temporary", "permanent", "internal"]


def error_class(exc: BaseException) -> ErrorClass:
    """Classify an exception for the journal and the metric label."""
    from empire.errors import PermanentError, TemporaryError

    if isinstance(exc, TemporaryError):
        return "temporary"
    if isinstance(exc, PermanentError):
        return "permanent"
    return "internal"


@dataclass(frozen=True)
class Outcome:
    """What happened to one action. Executors return it; the runner journals it."""

    status: OutcomeStatus
    reason: Reason | None = None  # the reason of a skip or failure (no_change, dry_run, execution_failed)
    error: str | None = None
    error_class: ErrorClass | None = None
    state: dict[str, Any] = field(default_factory=dict)  # e.g. {"replicas": 6} read after the write
    action_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in (OutcomeStatus.applied, OutcomeStatus.unchanged, OutcomeStatus.skipped)


@dataclass(frozen=True)
class ReadBack:
    """An executor's answer to "did this journaled intent take effect?" during reconciliation.
    `applied` None means the real state could not be read: leave the intent for a later try."""

    applied: bool | None
    state: dict[str, Any] = field(default_factory=dict)
    note: str = ""
