"""Remediation: the action an alert rule names, built as an ordinary action. PURE.

A rule's `remediation` runs through the same path as every other action: it is built here as a
`ScaleTo`, `PausePersona` or `DrainAccount` with `Reason.remediation` first, returned with the
alert by `rules.evaluate()`, and journaled and executed by the one `ActionRunner`.

* `scale` is a raw recommendation (`replicas`, or current + `by`) passed through `stabilize()`
  like a pin: it skips the windows and rate policies (an operator asked for exactly this) but
  stays within `min_replicas..max_replicas`, and it is recorded in the target's history, so the
  scale-down stabilization window holds it for a while instead of undoing it at the next tick.
  It starts from the replicas this tick's scaling decision settled on, when the loop passes them.
  A paused target journals it as skipped; a pinned target (policy or annotation) is not touched.
* `pause_persona` / `drain_account` hold while the alert fires and are undone when it resolves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from empire.agent.deciding import is_paused, pinned_replicas
from empire.agent.stabilizing import TargetHistory, stabilize
from empire.agent.types import Action, DrainAccount, Observation, PausePersona, Reason, Recommendation, ScaleTo
from empire.policies.alerting import AlertRule
from empire.policies.schema import Policy

__all__ = ["Remediated", "remediate", "undo"]


@dataclass(frozen=True)
class Remediated:
    actions: tuple[Action, ...]
    history: tuple[str, TargetHistory] | None = None  # (target, history after the scale remediation)
    note: str = ""


def remediate(
    rule: AlertRule,
    policy: Policy,
    now: datetime,
    observations: Mapping[str, Observation],
    histories: Mapping[str, TargetHistory],
    desired: Mapping[str, int],
) -> Remediated:
    """The actions a rule's remediation asks for when its alert starts firing."""
    rem = rule.remediation
    if rem is None:
        return Remediated(())
    reasons = (Reason.remediation, Reason(rule.kind.value))
    if rem.pause_persona is not None:
        return Remediated((PausePersona(rem.pause_persona, True, reasons, rule.name),))
    if rem.drain_account is not None:
        d = rem.drain_account
        return Remediated((DrainAccount(d.provider, d.account, True, reasons, rule.name),))
    assert rem.scale is not None
    try:
        target = policy.target(rem.scale.target)
    except KeyError:
        return Remediated((), note=f"unknown target {rem.scale.target!r}: not scaled")
    obs = observations.get(target.name)
    annotations = obs.annotations if obs else {}
    if pinned_replicas(target, annotations) is not None:
        return Remediated((), note=f"{target.name} is pinned: not scaled")
    current = desired.get(target.name, obs.current_replicas if obs else None)
    if current is None:
        return Remediated((), note=f"{target.name}: current replicas unknown, never scale blind")
    wanted = rem.scale.replicas if rem.scale.replicas is not None else current + (rem.scale.by or 0)
    rec = Recommendation(
        target=target.name, at=now, current=current, replicas=max(0, wanted), reasons=(Reason.remediation,),
        bypass_stabilization=True, details={"alert": rule.name},
    )  # fmt: skip
    st = stabilize(target, rec, histories.get(target.name, TargetHistory()), now)
    if st.desired == current:
        return Remediated((), (target.name, st.history), f"{target.name} already at {current} replicas")
    paused = is_paused(target, annotations)
    wl = target.workload
    scale = ScaleTo(
        target.name, wl.namespace, wl.kind, wl.name, st.desired, current,
        (*reasons, *st.reasons, *((Reason.paused,) if paused else ())),
    )  # fmt: skip
    return Remediated((scale,), (target.name, st.history))


def undo(rule: AlertRule) -> tuple[Action, ...]:
    """Actions that end a remediation when its alert resolves (scaling is left to the scaler)."""
    rem = rule.remediation
    if rem is None:
        return ()
    reasons = (Reason.remediation, Reason(rule.kind.value))
    if rem.pause_persona is not None:
        return (PausePersona(rem.pause_persona, False, reasons, rule.name),)
    if rem.drain_account is not None:
        d = rem.drain_account
        return (DrainAccount(d.provider, d.account, False, reasons, rule.name),)
    return ()
