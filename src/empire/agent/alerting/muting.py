"""Silences and inhibition: the two ways an alert is muted without being resolved. PURE.

* A *silence* is an operator's "I know, stop telling me": matchers plus a time window, stored in
  the state DB (`empire silence add|list|expire`). An alert is silenced while an active silence's
  matchers all match its labels. Silences end by themselves (`ends_at`), so a forgotten silence
  cannot hide an outage forever.
* An *inhibit rule* mutes alerts (targets) while a related, more important alert (a source) is
  firing: the default policy's rule lets a critical alert mute the warnings of the same alert name
  and target. `equal` labels must have the same value in source and target (absent = ""), and an
  alert never inhibits itself. Silenced sources still inhibit (Alertmanager does the same: a
  silence hides a notification, not the fact that the source fires).

A muted alert stays firing in the state DB and on the dashboard (with the reason); it is only
left out of notifications. When the silence ends, the next group flush notifies it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from empire.agent.alerting.matching import Matcher, matchers_match, parse_matchers
from empire.errors import ConfigError
from empire.policies.alerting import InhibitRule
from empire.policies.durations import MAX_DURATION, format_duration

__all__ = ["Inhibitor", "MuteReason", "Silence", "active_silences", "check_silence", "mute_reasons"]


class MuteReason:
    silenced = "silenced"
    inhibited = "inhibited"


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def state(self, now: datetime) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matchers_match(parse_matchers(self.matchers), labels)


def active_silences(silences: Iterable[Silence], now: datetime) -> list[Silence]:
    return [s for s in silences if s.active(now)]


def check_silence(matchers: Sequence[str], start: datetime, end: datetime, now: datetime, comment: str) -> list[str]:
    """The matchers of a new silence in canonical form, or a ConfigError saying what is wrong.

    As in Alertmanager: at least one matcher must not match an empty label (so `alertname=~".*"`
    alone cannot mute everything), a comment says why, and the window ends in the future, after
    it starts, and within ten years (a forgotten silence must end by itself)."""
    parsed = parse_matchers(list(matchers))
    if all(m.matches({}) for m in parsed):
        raise ConfigError("a silence needs at least one matcher that does not match an empty label "
                          '(e.g. alertname="queue-anomaly"), so it cannot mute everything by accident')  # fmt: skip
    if end - now > MAX_DURATION:
        raise ConfigError(f"the silence would end more than {format_duration(MAX_DURATION)} (ten years) from now")
    if end <= max(start, now):
        raise ConfigError("the silence would end before it starts (or in the past)")
    if not comment.strip():
        raise ConfigError("a silence needs a comment that says why")
    return [str(m) for m in parsed]


@dataclass(frozen=True)
class _Rule:
    source: tuple[Matcher, ...]
    target: tuple[Matcher, ...]
    equal: tuple[str, ...]


class Inhibitor:
    """Answers "is this alert inhibited?" given the firing alerts of one instant."""

    def __init__(self, rules: Sequence[InhibitRule], firing: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        """`firing`: (fingerprint, labels) of every firing alert, muted or not."""
        self._rules = [
            _Rule(parse_matchers(r.source_matchers), parse_matchers(r.target_matchers), r.equal) for r in rules
        ]
        self._sources: list[list[tuple[str, Mapping[str, str]]]] = [
            [(fp, lb) for fp, lb in firing if matchers_match(rule.source, lb)] for rule in self._rules
        ]

    def inhibited_by(self, fp: str, labels: Mapping[str, str]) -> str | None:
        """The fingerprint of an alert that inhibits this one, or None."""
        for rule, sources in zip(self._rules, self._sources, strict=True):
            if not sources or not matchers_match(rule.target, labels):
                continue
            for sfp, slabels in sources:
                if sfp == fp:
                    continue
                if all(slabels.get(k, "") == labels.get(k, "") for k in rule.equal):
                    return sfp
        return None


def mute_reasons(
    alerts: Iterable[tuple[str, Mapping[str, str], bool]],
    inhibit_rules: Sequence[InhibitRule],
    silences: Iterable[Silence],
    now: datetime,
) -> dict[str, str]:
    """fingerprint -> "silenced" | "inhibited" for each muted alert of (fingerprint, labels, firing)."""
    items = list(alerts)
    active = active_silences(silences, now)
    inhibitor = Inhibitor(inhibit_rules, [(fp, lb) for fp, lb, firing in items if firing])
    out: dict[str, str] = {}
    for fp, labels, _firing in items:
        if any(s.matches(labels) for s in active):
            out[fp] = MuteReason.silenced
        elif inhibitor.inhibited_by(fp, labels) is not None:
            out[fp] = MuteReason.inhibited
    return out
