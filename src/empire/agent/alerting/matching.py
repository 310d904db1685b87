"""Label matchers and fingerprints, with Alertmanager's semantics. PURE.

Why Alertmanager's exact rules: operators copy routes, silences and inhibit rules between
Alertmanager and empire, so `severity=~"warn|crit"` must mean the same thing in both:

* a regular expression is anchored at both ends (`=~"warn"` does not match `warning`);
* a label that is absent has the value `""` (so `team=""` matches alerts without a team label,
  and `team!="ops"` matches them too);
* a list of matchers is an AND; the empty list matches everything.

A fingerprint identifies an alert by its labels only (not by value or annotations): the same rule
firing again for the same labels is the same alert, which is how notifications are deduplicated.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from empire.errors import ConfigError
from empire.policies.alerting import parse_matcher

__all__ = ["Matcher", "fingerprint", "matchers_match", "parse_matchers"]


@dataclass(frozen=True)
class Matcher:
    """One `name op "value"` condition on an alert's labels."""

    name: str
    op: str  # = != =~ !~
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        return _parse(text)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = _regex(self.value).fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


@lru_cache(maxsize=1024)
def _parse(text: str) -> Matcher:
    try:
        name, op, value = parse_matcher(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return Matcher(name, op, value.replace('\\"', '"').replace("\\\\", "\\"))


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    """Parse matcher strings; a bad one is a `ConfigError` naming it."""
    return tuple(_parse(t) for t in texts)


def matchers_match(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (the empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (order-independent)."""
    h = hashlib.sha256()
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\xff")
        h.update(str(labels[k]).encode())
        h.update(b"\xfe")
    return h.hexdigest()[:16]
