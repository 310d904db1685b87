"""Grouping, group_wait / group_interval / repeat_interval, dedup, resolved notifications, inhibition
and silences: the pure dispatcher driven second by second on a fake clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from empire.agent.alerting.dispatch import DispatchState, Plan, plan
from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.muting import Silence
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.alerting.routing import build_tree
from empire.policies.alerting import InhibitRule, Route

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ROUTE = Route.model_validate(
    {
        "receiver": "dashboard",
        "group_by": ["alertname", "target"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "1h",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "slack"},
            {"matchers": ['severity="warning"'], "receiver": "email"},
        ],
    }
)
INHIBIT = (InhibitRule(source_matchers=('severity="critical"',), target_matchers=('severity="warning"',),
                       equal=("alertname", "target")),)  # fmt: skip


def alert(name: str, target: str = "api", severity: str = "warning", at: datetime = T0, **extra: str) -> AlertInstance:
    labels = {"alertname": name, "target": target, "severity": severity, **extra}
    return AlertInstance(fingerprint(labels), name, severity, labels, {"summary": f"{name} on {target}"}, at)


def resolve(a: AlertInstance, at: datetime) -> AlertInstance:
    return replace(a, ends_at=at)


class Sim:
    """Calls `plan` once per simulated second, like the service does (more often than needed)."""

    def __init__(self, inhibit: tuple[InhibitRule, ...] = (), route: Route = ROUTE) -> None:
        self.tree = build_tree(route)
        self.inhibit = inhibit
        self.state = DispatchState()
        self.now = T0
        self.alerts: dict[str, AlertInstance] = {}
        self.silences: list[Silence] = []
        self.sent: list[tuple[float, Notification]] = []
        self.last: Plan | None = None

    def fire(self, a: AlertInstance) -> AlertInstance:
        a = replace(a, starts_at=self.now) if a.starts_at == T0 and self.now != T0 else a
        self.alerts[a.fingerprint] = a
        return a

    def resolve(self, a: AlertInstance) -> None:
        self.alerts[a.fingerprint] = resolve(self.alerts[a.fingerprint], self.now)

    def run(self, seconds: float) -> list[tuple[float, Notification]]:
        out = []
        end = self.now + timedelta(seconds=seconds)
        while self.now <= end:
            p = plan(self.alerts.values(), self.tree, self.inhibit, self.silences, self.state, self.now)
            self.state, self.last = p.state, p
            for n in p.notifications:
                out.append(((self.now - T0).total_seconds(), n))
            self.now += timedelta(seconds=1)
        self.now -= timedelta(seconds=1)
        self.sent.extend(out)
        return out

    def step(self, seconds: float) -> list[tuple[float, Notification]]:
        self.now += timedelta(seconds=1)
        return self.run(seconds - 1)


def summary(sent: list[tuple[float, Notification]]) -> list[tuple[float, str, str, list[str]]]:
    return sorted((t, n.receiver, n.status, sorted(f"{a.rule}:{a.status}" for a in n.alerts)) for t, n in sent)


def test_group_wait_batches_alerts_that_start_together() -> None:
    sim = Sim()
    sim.fire(alert("queue-anomaly", "generator"))
    sim.run(10)
    sim.fire(alert("queue-anomaly", "generator", instance="b"))  # same group (alertname, target)
    sim.fire(alert("latency", "api"))  # another group
    got = sim.step(60)
    assert summary(got) == [
        (30.0, "email", "firing", ["queue-anomaly:firing", "queue-anomaly:firing"]),
        (40.0, "email", "firing", ["latency:firing"]),
    ]


def test_severity_routing() -> None:
    sim = Sim()
    sim.fire(alert("a", severity="critical"))
    sim.fire(alert("b", severity="warning"))
    sim.fire(alert("c", severity="info"))
    assert sorted(n.receiver for _, n in sim.run(31)) == ["dashboard", "email", "slack"]


def test_no_duplicates_then_repeat_interval() -> None:
    sim = Sim()
    sim.fire(alert("a"))
    sim.run(3 * 3600)
    times = [t for t, _ in sim.sent]
    # first after group_wait; a repeat at the first group_interval tick *after* each hour (as Alertmanager)
    assert times == [30.0, 30.0 + 3900, 30.0 + 2 * 3900]


def test_new_alert_in_a_flushed_group_waits_for_group_interval() -> None:
    sim = Sim()
    sim.fire(alert("a"))
    sim.run(60)
    sim.fire(alert("a", instance="2"))  # same group, at t=60
    got = sim.step(600)
    assert summary(got) == [(330.0, "email", "firing", ["a:firing", "a:firing"])]


def test_resolved_notification_once_then_quiet() -> None:
    sim = Sim()
    a = sim.fire(alert("a"))
    sim.run(100)
    sim.resolve(a)
    got = sim.step(4 * 3600)
    assert summary(got) == [(330.0, "email", "resolved", ["a:resolved"])]
    assert got[0][1].alerts[0].ends_at == T0 + timedelta(seconds=100)


def test_partial_resolution_is_reported_with_the_still_firing_alerts() -> None:
    sim = Sim()
    a = sim.fire(alert("a"))
    sim.fire(alert("a", instance="2"))
    sim.run(100)
    sim.resolve(a)
    got = sim.step(600)
    assert summary(got) == [(330.0, "email", "firing", ["a:firing", "a:resolved"])]
    got = sim.step(3600)  # the resolved one left the group: the repeat carries only the firing one
    assert summary(got) == [(330.0 + 3900, "email", "firing", ["a:firing"])]  # an hour after the last one


def test_fired_and_resolved_within_group_wait_is_never_notified() -> None:
    sim = Sim()
    a = sim.fire(alert("a"))
    sim.run(10)
    sim.resolve(a)
    assert sim.step(3600) == []


def test_refiring_after_resolution_is_a_new_notification() -> None:
    sim = Sim()
    a = sim.fire(alert("a"))
    sim.run(40)
    sim.resolve(a)
    sim.step(600)
    sim.fire(alert("a"))  # same fingerprint, new episode: the group is idle, so group_wait again
    got = sim.step(100)
    assert summary(got) == [(670.0, "email", "firing", ["a:firing"])]


def test_alert_older_than_group_wait_is_not_held_back() -> None:
    sim = Sim()
    sim.now = T0 + timedelta(minutes=10)  # e.g. found firing in the DB after a restart
    sim.alerts["x"] = alert("a", at=T0)
    got = sim.run(0)
    assert [t for t, _ in got] == [600.0]


def test_inhibition_critical_mutes_its_warning() -> None:
    sim = Sim(inhibit=INHIBIT)
    crit = sim.fire(alert("latency", "api", "critical"))
    sim.fire(alert("latency", "api", "warning"))
    sim.fire(alert("latency", "generator", "warning"))  # other target: not inhibited (equal: target)
    got = sim.run(60)
    assert summary(got) == [
        (30.0, "email", "firing", ["latency:firing"]),
        (30.0, "slack", "firing", ["latency:firing"]),
    ]
    assert [n.group_labels["target"] for _, n in got if n.receiver == "email"] == ["generator"]
    assert sim.last is not None and list(sim.last.muted.values()) == ["inhibited"]
    sim.resolve(crit)  # the source resolves: the warning is notified at the next flush
    got = sim.step(600)
    assert summary(got) == [
        (330.0, "email", "firing", ["latency:firing"]),
        (330.0, "slack", "resolved", ["latency:resolved"]),
    ]


def test_an_alert_never_inhibits_itself() -> None:
    rule = InhibitRule(source_matchers=('alertname="a"',), target_matchers=('alertname="a"',))
    sim = Sim(inhibit=(rule,))
    sim.fire(alert("a"))
    assert len(sim.run(31)) == 1


def silence(matchers: tuple[str, ...], start: datetime, hours: float) -> Silence:
    return Silence("s1", matchers, start, start + timedelta(hours=hours), "ops", "maintenance", start)


def test_silence_mutes_until_it_expires_then_notifies() -> None:
    sim = Sim()
    sim.silences.append(silence(('alertname="queue-anomaly"',), T0, 2))
    sim.fire(alert("queue-anomaly", "generator"))
    sim.fire(alert("latency", "api"))
    got = sim.run(2 * 3600 + 600)
    assert summary(got) == [
        (30.0, "email", "firing", ["latency:firing"]),
        (3930.0, "email", "firing", ["latency:firing"]),  # repeat of the unsilenced one
        (7230.0, "email", "firing", ["queue-anomaly:firing"]),  # first flush after the silence ended
    ]


def test_silence_that_has_not_started_does_not_mute() -> None:
    sim = Sim()
    sim.silences.append(silence(('alertname="a"',), T0 + timedelta(hours=1), 1))
    sim.fire(alert("a"))
    assert len(sim.run(31)) == 1


def test_silenced_resolution_is_not_notified_and_regexp_silences() -> None:
    sim = Sim()
    a = sim.fire(alert("a", "api"))
    sim.run(40)  # notified firing
    sim.silences.append(silence(('target=~"ap.*"',), sim.now, 1))
    sim.resolve(a)
    assert sim.step(1800) == []


def test_receiver_change_in_policy_keeps_groups() -> None:
    sim = Sim()
    sim.fire(alert("a", severity="info"))
    sim.run(40)
    sim.tree = build_tree(ROUTE.model_copy(update={"receiver": "other"}))
    got = sim.step(2 * 3600)
    assert {n.receiver for _, n in got} == {"other"}  # a new receiver has not been told: it is


def test_next_flush_at_tells_the_service_when_to_wake() -> None:
    sim = Sim()
    sim.fire(alert("a"))
    sim.run(0)
    assert sim.last is not None and sim.last.next_flush_at == T0 + timedelta(seconds=30)


def test_notification_payload_round_trips() -> None:
    sim = Sim()
    a = sim.fire(alert("a"))
    sim.run(40)
    sim.resolve(a)
    n = sim.step(600)[0][1]
    p = n.payload()
    assert (
        p["status"] == "resolved"
        and p["receiver"] == "email"
        and p["groupLabels"] == {"alertname": "a", "target": "api"}
    )
    assert p["commonLabels"]["severity"] == "warning"
    assert Notification.from_payload(p) == n
