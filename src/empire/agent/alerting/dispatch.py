"""Grouping, timing and deduplication of notifications: Alertmanager's dispatcher as a pure function.

`plan(alerts, tree, inhibit_rules, silences, state, now)` answers "which notifications are due
now?" and returns the next `DispatchState`; the service calls it in a loop and writes what it
returns into the outbox. Nothing here sleeps, reads a clock or touches the database, so the table
tests drive hours of group timing on a fake clock in microseconds.

The rules, as in Alertmanager (`dispatch/dispatch.go`, `notify/notify.go`):

* every (route, grouping labels) is a *group*; a new group waits `group_wait` before its first
  notification, to batch alerts that start together (an alert older than `group_wait` when its
  group appears, e.g. after a restart, is not held back);
* afterwards the group is looked at every `group_interval`; it notifies when it has a firing alert
  its receiver was not told about, when an alert it told about is resolved, or when
  `repeat_interval` has passed since the last notification while alerts still fire;
* muted alerts (silenced or inhibited) are left out; a group with nothing left to say is quiet;
* a resolved alert is reported at the next flush and then leaves its group; a group left with
  no alert is idle, and the next alert in it waits `group_wait` again;
* the *notification log* (last notification per receiver and group: time, firing and resolved
  fingerprints) is what deduplicates; the service rebuilds it from the outbox after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from empire.agent.alerting.muting import Silence, mute_reasons
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.alerting.routing import RouteNode, group_key, group_labels, match_routes
from empire.policies.alerting import InhibitRule

__all__ = ["DispatchState", "GroupState", "LogEntry", "Plan", "latest_by_fingerprint", "needs_update", "plan"]

LOG_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class LogEntry:
    """The last notification sent (queued) to one receiver for one group."""

    at: datetime
    firing: frozenset[str]
    resolved: frozenset[str]


@dataclass(frozen=True)
class GroupState:
    key: str
    route: str
    receiver: str
    labels: Mapping[str, str]
    next_flush_at: datetime
    flushed: bool = False
    done: frozenset[tuple[str, datetime]] = frozenset()  # resolved alerts already flushed: (fp, starts_at)
    idle: bool = False  # every alert is resolved and reported: a new one starts a fresh group_wait


@dataclass(frozen=True)
class DispatchState:
    groups: Mapping[str, GroupState] = field(default_factory=dict)
    log: Mapping[tuple[str, str], LogEntry] = field(default_factory=dict)  # (receiver, group_key)


@dataclass(frozen=True)
class Plan:
    notifications: tuple[Notification, ...]
    state: DispatchState
    muted: Mapping[str, str]  # fingerprint -> silenced | inhibited
    next_flush_at: datetime | None  # when `plan` has something to do next (None: no groups)


def needs_update(entry: LogEntry | None, firing: frozenset[str], resolved: frozenset[str], repeat: timedelta,
                 now: datetime) -> bool:  # fmt: skip
    """Alertmanager's `DedupStage.needsUpdate` (resolved notifications always on)."""
    if entry is None:
        return bool(firing)  # nothing told yet: only news of firing alerts is worth a message
    if not firing <= entry.firing:
        return True  # a firing alert the receiver has not heard about
    if not firing:
        return bool(entry.firing)  # all resolved: say so once (if it had been told they fired)
    if not resolved <= entry.resolved:
        return True
    return entry.at < now - repeat  # strictly, as Alertmanager: repeats land on a group_interval tick


def latest_by_fingerprint(alerts: Iterable[AlertInstance]) -> list[AlertInstance]:
    """One alert per fingerprint: the newest episode (a flapping alert has several rows)."""
    best: dict[str, AlertInstance] = {}
    for a in alerts:
        cur = best.get(a.fingerprint)
        if cur is None or (a.starts_at, a.firing) > (cur.starts_at, cur.firing):
            best[a.fingerprint] = a
    return list(best.values())


def _order(a: AlertInstance) -> tuple[bool, datetime, str]:
    return (not a.firing, a.starts_at, a.fingerprint)


def plan(
    alerts: Iterable[AlertInstance],
    tree: RouteNode,
    inhibit_rules: Sequence[InhibitRule],
    silences: Iterable[Silence],
    state: DispatchState,
    now: datetime,
) -> Plan:
    """Notifications due at `now` and the dispatcher's next state. Pure."""
    current = latest_by_fingerprint(alerts)
    muted = mute_reasons(((a.fingerprint, a.labels, a.firing) for a in current), inhibit_rules, silences, now)

    members: dict[str, list[AlertInstance]] = {}
    nodes: dict[str, tuple[RouteNode, dict[str, str]]] = {}
    for a in current:
        for node in match_routes(tree, a.labels):
            glabels = group_labels(node, a.labels)
            gk = group_key(node, glabels)
            members.setdefault(gk, []).append(a)
            nodes[gk] = (node, glabels)

    groups: dict[str, GroupState] = {}
    log = {k: e for k, e in state.log.items() if e.at > now - LOG_RETENTION}
    out: list[Notification] = []
    for gk, group_alerts in members.items():
        node, glabels = nodes[gk]
        g = state.groups.get(gk) or GroupState(gk, node.key, node.receiver, glabels, now + node.group_wait)
        if g.receiver != node.receiver:  # the policy changed the route's receiver
            g = replace(g, receiver=node.receiver)
        present = {(a.fingerprint, a.starts_at) for a in group_alerts}
        done = g.done & present
        remaining = sorted((a for a in group_alerts if (a.fingerprint, a.starts_at) not in done), key=_order)
        if not remaining:
            groups[gk] = replace(g, done=done, idle=True)
            continue
        if g.idle:
            g = replace(g, idle=False, flushed=False, next_flush_at=now + node.group_wait)
        nxt = g.next_flush_at
        if not g.flushed and any(a.firing and a.starts_at + node.group_wait <= now for a in remaining):
            nxt = min(nxt, now)  # an alert already older than group_wait is not held back
        if now >= nxt:
            visible = [a for a in remaining if a.fingerprint not in muted]
            firing = frozenset(a.fingerprint for a in visible if a.firing)
            resolved = frozenset(a.fingerprint for a in visible if not a.firing)
            key = (node.receiver, gk)
            if visible and needs_update(log.get(key), firing, resolved, node.repeat_interval, now):
                expires = now + node.repeat_interval + 2 * node.group_interval
                out.append(Notification(node.receiver, gk, glabels, tuple(visible), now, expires, node.key))
                log[key] = LogEntry(now, firing, resolved)
            done = done | {(a.fingerprint, a.starts_at) for a in remaining if not a.firing}
            g = replace(g, next_flush_at=now + node.group_interval, flushed=True, done=done)
        else:
            g = replace(g, next_flush_at=nxt, done=done)
        groups[gk] = g
    next_at = min((g.next_flush_at for g in groups.values() if not g.idle), default=None)
    return Plan(tuple(out), DispatchState(groups, log), muted, next_at)
