"""The EmpireConfig `status`: conditions, counts and the agent's latest decisions. PURE.

Conditions follow the Kubernetes convention (`type`, `status` True/False/Unknown, CamelCase
`reason`, human `message`, `lastTransitionTime` that moves only when `status` changes,
`observedGeneration`):

- **Ready**: is this spec the policy in force? True/`Applied`; False/`InvalidSpec` (message: the
  field paths; the last good policy keeps running), False/`NotActive` (another EmpireConfig is in
  force), Unknown/`StateUnavailable` (the state DB could not be written; retried).
- **Degraded**: is the agent healthy with it? Computed from the agent's latest decision per target
  in the state DB: True/`AgentStalled` (no decision for `stall_after`), True/`PolicyNotAdopted`
  (the agent still decides with an older version long after this one was applied),
  True/`TargetsDegraded` (a target's latest decision carries a reason such as
  `metrics_unavailable` or `execution_failed`), Unknown/`AwaitingAgent`, False/`Healthy` or
  False/`NoTargets`.
- **Paused**: does the policy hold the agent back? True/`DryRun`, True/`AllTargetsPaused`,
  False/`SomeTargetsPaused` (listed) or False/`Active`.

Every builder returns a *patch* for `status` (a merge-patch dict) and takes the previous status,
so unchanged conditions keep their transition times and an unchanged status yields an equal patch,
which the handler then skips (no write that changes nothing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from empire.agent.records import DecisionRecord
from empire.agent.types import Reason
from empire.operator.spec import Candidate, ConfigRef, SpecResult
from empire.policies.schema import Policy

__all__ = [
    "DEGRADING_REASONS",
    "agent_status",
    "applied_status",
    "condition",
    "events_between",
    "inactive_status",
    "invalid_status",
    "isotime",
    "paused_condition",
    "stall_after",
    "unavailable_status",
]

READY, DEGRADED, PAUSED = "Ready", "Degraded", "Paused"
ORDER = (READY, DEGRADED, PAUSED)
MAX_ISSUES = 5
DEGRADING_REASONS: frozenset[str] = frozenset(
    r.value
    for r in (
        Reason.metrics_unavailable, Reason.fallback_hold, Reason.fallback_fixed, Reason.execution_failed,
        Reason.workload_unknown, Reason.signal_missing, Reason.signal_stale, Reason.signal_invalid,
        Reason.conflict,
    )
)  # fmt: skip
"""Decision reasons that mean the agent is deciding without full information, or failed (or may not) act.
A `conflict` (an HPA or KEDA ScaledObject on the same workload) makes the reason `AutoscalerConflict`."""


def isotime(at: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes times."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _conditions(status: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [dict(c) for c in (status or {}).get("conditions") or [] if isinstance(c, Mapping)]


def condition(
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One condition; keeps the previous `lastTransitionTime` when `status` did not change."""
    prev = next((c for c in _conditions(previous) if c.get("type") == type_), None)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since or isotime(now),
    }


def _merge(previous: Mapping[str, Any] | None, *new: dict[str, Any]) -> list[dict[str, Any]]:
    by_type = {c["type"]: c for c in _conditions(previous) if c.get("type")}
    for c in new:
        by_type[c["type"]] = c
    known = [by_type.pop(t) for t in ORDER if t in by_type]
    return known + sorted(by_type.values(), key=lambda c: c["type"])


def paused_condition(policy: Policy) -> tuple[str, str, str]:
    """(status, reason, message) of the Paused condition for a policy."""
    if policy.loop.dry_run:
        return "True", "DryRun", "loop.dry_run is set: every action is decided and journaled, none executed"
    paused = [t.name for t in policy.targets if t.paused]
    personas = [p.name for p in policy.personas if p.paused]
    if policy.targets and len(paused) == len(policy.targets):
        return "True", "AllTargetsPaused", f"every target is paused: {', '.join(paused)}"
    if paused or personas:
        parts = []
        if paused:
            parts.append(f"targets {', '.join(paused)}")
        if personas:
            parts.append(f"personas {', '.join(personas)}")
        return "False", "SomeTargetsPaused", "paused: " + "; ".join(parts)
    return "False", "Active", "nothing is paused"


def _counts(policy: Policy) -> dict[str, int]:
    return {
        "targetCount": len(policy.targets),
        "personaCount": len(policy.personas),
        "providerCount": len(policy.providers),
    }


def applied_status(
    result: SpecResult,
    previous: Mapping[str, Any] | None,
    now: datetime,
    changed: bool,
) -> dict[str, Any]:
    """Status after the spec was validated and is the policy in force (`changed`: newly applied now)."""
    assert result.policy is not None and result.version is not None
    g = result.ref.generation
    prev = previous or {}
    same = prev.get("appliedVersion") == result.version and not changed
    paused = paused_condition(result.policy)
    return {
        "observedGeneration": g,
        "appliedGeneration": g,
        "appliedVersion": result.version,
        "appliedAt": prev.get("appliedAt") if same and prev.get("appliedAt") else isotime(now),
        **_counts(result.policy),
        "issues": [],
        "conditions": _merge(
            previous,
            condition(READY, "True", "Applied", f"policy version {result.version} is in force", g, now, previous),
            condition(PAUSED, *paused, g, now, previous),
        ),
    }


def invalid_status(result: SpecResult, previous: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """Status for a spec that failed validation: field paths in the message, nothing else changes."""
    g = result.ref.generation
    kept = (previous or {}).get("appliedVersion")
    tail = f"; policy version {kept} stays in force" if kept else "; no policy applied from this EmpireConfig"
    message = "; ".join(result.issue_lines(MAX_ISSUES)) + tail
    return {
        "observedGeneration": g,
        "issues": [{"path": i.path, "message": i.message} for i in result.issues],
        "conditions": _merge(previous, condition(READY, "False", "InvalidSpec", message, g, now, previous)),
    }


def inactive_status(
    ref: ConfigRef, active: Candidate | None, previous: Mapping[str, Any] | None, now: datetime
) -> dict[str, Any]:
    """Status of an EmpireConfig that is not the one in force."""
    other = f"EmpireConfig {active.namespace}/{active.name}" if active else "another EmpireConfig"
    message = f"{other} is in force (the oldest one wins): one agent runs one policy; delete one of them"
    return {
        "observedGeneration": ref.generation,
        "conditions": _merge(previous, condition(READY, "False", "NotActive", message, ref.generation, now, previous)),
    }


def unavailable_status(ref: ConfigRef, error: str, previous: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The state DB could not be reached: the outcome is unknown until the retry."""
    return {
        "conditions": _merge(
            previous,
            condition(READY, "Unknown", "StateUnavailable", f"state database: {error}; retrying", ref.generation,
                      now, previous),
        ),
    }  # fmt: skip


def stall_after(policy: Policy) -> timedelta:
    """How old the newest decision may be before the agent counts as stalled: 3 ticks, at least 1 min."""
    return max(3 * policy.loop.interval, timedelta(minutes=1))


def _aware(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _target_entry(name: str, d: DecisionRecord | None) -> dict[str, Any]:
    if d is None:
        return {"name": name, "current": None, "recommended": None, "desired": None, "reasons": [],
                "decidedAt": None, "policyVersion": None, "dryRun": False}  # fmt: skip
    return {
        "name": name, "current": d.current, "recommended": d.recommended, "desired": d.desired,
        "reasons": list(d.reasons), "decidedAt": isotime(d.at), "policyVersion": d.policy_version,
        "dryRun": bool(d.dry_run),
    }  # fmt: skip


def _degraded(
    policy: Policy,
    latest: Mapping[str, DecisionRecord | None],
    applied_version: str | None,
    applied_at: datetime | None,
    now: datetime,
) -> tuple[str, str, str, str | None]:
    names = [t.name for t in policy.targets]
    if not names:
        return "False", "NoTargets", "no scaling targets in the policy", None
    seen = [d for n in names if (d := latest.get(n)) is not None]
    if not seen:
        return "Unknown", "AwaitingAgent", f"no decision recorded yet for {', '.join(names)}", None
    newest = max(seen, key=lambda d: _aware(d.at))  # type: ignore[arg-type, return-value]
    newest_at = _aware(newest.at)
    assert newest_at is not None
    limit = stall_after(policy)
    agent_version = newest.policy_version
    if now - newest_at > limit:
        return ("True", "AgentStalled",
                f"no decision since {isotime(newest_at)} (allowed {int(limit.total_seconds())}s; loop interval "
                f"{int(policy.loop.interval.total_seconds())}s): is `empire run` up and the leader?", agent_version)  # fmt: skip
    if applied_version and agent_version != applied_version and applied_at and now - applied_at > limit:
        return ("True", "PolicyNotAdopted",
                f"the agent still decides with policy version {agent_version}; {applied_version} was applied at "
                f"{isotime(applied_at)}", agent_version)  # fmt: skip
    bad, conflict = [], False
    for n in names:
        d = latest.get(n)
        if d is not None:
            reasons = [r for r in d.reasons if r in DEGRADING_REASONS]
            if Reason.conflict.value in reasons:
                conflict = True
                others = (d.details or {}).get("conflicts") if isinstance(d.details, dict) else None
                if others:
                    reasons[reasons.index(Reason.conflict.value)] = f"conflict with {', '.join(others)}"
            if reasons:
                bad.append(f"{n}: {', '.join(reasons)}")
    if bad:
        return "True", "AutoscalerConflict" if conflict else "TargetsDegraded", "; ".join(bad), agent_version
    missing = [n for n in names if latest.get(n) is None]
    if missing:
        return "Unknown", "AwaitingAgent", f"no decision recorded yet for {', '.join(missing)}", agent_version
    return "False", "Healthy", f"every target decided; newest decision at {isotime(newest_at)}", agent_version


def agent_status(
    policy: Policy,
    latest: Mapping[str, DecisionRecord | None],
    previous: Mapping[str, Any] | None,
    now: datetime,
    generation: int,
) -> dict[str, Any]:
    """The agent's latest decision per target (policy order) and the Degraded condition."""
    prev = previous or {}
    applied_version = prev.get("appliedVersion")
    applied_at = _parse_time(prev.get("appliedAt"))
    status, reason, message, agent_version = _degraded(policy, latest, applied_version, applied_at, now)
    return {
        "agentPolicyVersion": agent_version,
        "targets": [_target_entry(t.name, latest.get(t.name)) for t in policy.targets],
        "conditions": _merge(previous, condition(DEGRADED, status, reason, message, generation, now, previous)),
    }


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _bad(c: Mapping[str, Any]) -> bool:
    if c.get("type") == DEGRADED:
        return c.get("status") == "True"
    if c.get("type") == READY:
        return c.get("status") != "True"
    return False


def events_between(
    previous: Mapping[str, Any] | None, new_conditions: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str, str]]:
    """Kubernetes Events (type, reason, message) for condition transitions.

    An event is due when a condition's (status, reason) changes, and for every new invalid
    generation. `Ready=True` transitions are left to the handler's `PolicyApplied` event, which
    names the versions. Unchanged conditions (a timer refresh) produce nothing.
    """
    before = {c.get("type"): c for c in _conditions(previous)}
    out: list[tuple[str, str, str]] = []
    for c in new_conditions:
        old = before.get(c.get("type"))
        moved = old is None or (old.get("status"), old.get("reason")) != (c.get("status"), c.get("reason"))
        reinvalid = (
            c.get("reason") == "InvalidSpec"
            and old is not None
            and old.get("observedGeneration") != c.get("observedGeneration")
        )
        if not (moved or reinvalid):
            continue
        if c.get("type") == READY and c.get("status") == "True":
            continue
        if old is None and not _bad(c) and not (c.get("type") == PAUSED and c.get("status") == "True"):
            continue  # a good first state (Active, Healthy): nothing worth an event
        if c.get("type") == DEGRADED and c.get("status") == "Unknown":
            continue
        if c.get("type") == DEGRADED and c.get("status") == "False" and (old is None or old.get("status") != "True"):
            continue  # healthy from the start: nothing worth an event
        kind = "Warning" if _bad(c) else "Normal"
        reason = str(c.get("reason"))
        if c.get("type") == DEGRADED and c.get("status") == "False":
            reason = "Recovered"
        out.append((kind, reason, str(c.get("message") or "")))
    return out
