"""The routing tree: which receivers an alert goes to, and with which grouping and timing. PURE.

Semantics are Alertmanager's (`dispatch/route.go`), so a route copied from an Alertmanager
configuration behaves the same here:

* an alert enters the root (which matches everything) and descends depth-first into the first
  child whose matchers match; it stops there unless that child has `continue: true`, in which case
  later siblings are tried too;
* a node none of whose children matched handles the alert itself (so the root is the fallback);
* children inherit `receiver`, `group_by`, `group_wait`, `group_interval` and `repeat_interval`
  from their parent when they do not set them;
* `group_by: ['...']` groups by every label (one alert per group).

Each node gets a stable `key` built from the matchers on its path (Alertmanager's route key), and
each group a `group_key` = route key + the grouping labels: the outbox and the notification log
are keyed by it, so restarts and policy reloads keep deduplicating.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from empire.agent.alerting.matching import Matcher, matchers_match, parse_matchers
from empire.policies.alerting import Route

__all__ = ["GROUP_BY_ALL", "RouteNode", "build_tree", "group_key", "group_labels", "match_routes"]

GROUP_BY_ALL = "..."

# Alertmanager's defaults for a root that sets nothing.
_DEFAULT_GROUP_WAIT = timedelta(seconds=30)
_DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
_DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)


@dataclass(frozen=True)
class RouteNode:
    """A route with every inherited setting resolved."""

    key: str
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    continue_: bool = False
    routes: tuple[RouteNode, ...] = ()

    @property
    def group_by_all(self) -> bool:
        return GROUP_BY_ALL in self.group_by

    def walk(self) -> list[RouteNode]:
        out = [self]
        for r in self.routes:
            out.extend(r.walk())
        return out


def build_tree(route: Route, parent: RouteNode | None = None, index: int = 0) -> RouteNode:
    """Resolve inheritance over a policy `Route` (the root must name a receiver)."""
    matchers = parse_matchers(route.matchers)
    own = "{" + ",".join(str(m) for m in matchers) + "}"
    key = own if parent is None else f"{parent.key}/{own}/{index}"
    if parent is None:
        if route.receiver is None:
            raise ValueError("the root route needs a receiver")
        receiver = route.receiver
        group_by = route.group_by or ()
        wait = route.group_wait if route.group_wait is not None else _DEFAULT_GROUP_WAIT
        interval = route.group_interval if route.group_interval is not None else _DEFAULT_GROUP_INTERVAL
        repeat = route.repeat_interval if route.repeat_interval is not None else _DEFAULT_REPEAT_INTERVAL
    else:
        receiver = route.receiver or parent.receiver
        group_by = route.group_by if route.group_by is not None else parent.group_by
        wait = route.group_wait if route.group_wait is not None else parent.group_wait
        interval = route.group_interval if route.group_interval is not None else parent.group_interval
        repeat = route.repeat_interval if route.repeat_interval is not None else parent.repeat_interval
    node = RouteNode(key, receiver, matchers, tuple(group_by), wait, interval, repeat, route.continue_)
    children = tuple(build_tree(child, node, i) for i, child in enumerate(route.routes))
    return RouteNode(key, receiver, matchers, tuple(group_by), wait, interval, repeat, route.continue_, children)


def match_routes(node: RouteNode, labels: Mapping[str, str]) -> list[RouteNode]:
    """The nodes that handle an alert with `labels` (Alertmanager's `Route.Match`)."""
    if not matchers_match(node.matchers, labels):
        return []
    found: list[RouteNode] = []
    for child in node.routes:
        hits = match_routes(child, labels)
        found.extend(hits)
        if hits and not child.continue_:
            break
    return found or [node]


def group_labels(node: RouteNode, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels an alert's group is identified by on `node` (absent labels are left out)."""
    if node.group_by_all:
        return dict(labels)
    return {k: labels[k] for k in node.group_by if k in labels}


def group_key(node: RouteNode, glabels: Mapping[str, str]) -> str:
    inner = ",".join(f"{k}={json.dumps(glabels[k])}" for k in sorted(glabels))
    return f"{node.key}:{{{inner}}}"
