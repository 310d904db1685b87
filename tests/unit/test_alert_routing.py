"""Matchers and the routing tree: Alertmanager's semantics, table-driven."""

from __future__ import annotations

from datetime import timedelta

import pytest

from empire.agent.alerting.matching import Matcher, fingerprint, matchers_match, parse_matchers
from empire.agent.alerting.routing import build_tree, group_key, group_labels, match_routes
from empire.errors import ConfigError
from empire.policies.alerting import Route
from empire.policies.loading import default_policy_path, load_policy


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ('severity="critical"', {"severity": "warning"}, False),
        ('severity!="critical"', {"severity": "warning"}, True),
        ('severity!="critical"', {}, True),  # absent label is ""
        ('team=""', {}, True),
        ('team=""', {"team": "ops"}, False),
        ('severity=~"warn|crit"', {"severity": "warn"}, True),
        ('severity=~"warn"', {"severity": "warning"}, False),  # anchored at both ends
        ('severity=~"warn.*"', {"severity": "warning"}, True),
        ('severity!~"info|debug"', {"severity": "info"}, False),
        ('severity!~"info|debug"', {"severity": "critical"}, True),
        ("target=generator", {"target": "generator"}, True),  # quotes optional
        ('target = "api"', {"target": "api"}, True),
    ],
)
def test_matcher(matcher: str, labels: dict[str, str], expected: bool) -> None:
    assert Matcher.parse(matcher).matches(labels) is expected


def test_matchers_are_anded_and_empty_matches_all() -> None:
    ms = parse_matchers(['severity="critical"', 'target=~"api|web"'])
    assert matchers_match(ms, {"severity": "critical", "target": "api"})
    assert not matchers_match(ms, {"severity": "critical", "target": "generator"})
    assert matchers_match((), {"anything": "x"})


@pytest.mark.parametrize("bad", ["severity", 'sev erity="x"', 'x=~"("'])
def test_bad_matcher_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        Matcher.parse(bad)


def test_fingerprint_depends_on_labels_only_not_order() -> None:
    a = fingerprint({"alertname": "x", "target": "api"})
    assert a == fingerprint({"target": "api", "alertname": "x"})
    assert a != fingerprint({"alertname": "x", "target": "generator"})
    assert a != fingerprint({"alertname": "x", "target": "api", "severity": "warning"})
    assert len(a) == 16


def _tree() -> Route:
    return Route.model_validate(
        {
            "receiver": "dashboard",
            "group_by": ["alertname", "target"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {"matchers": ['severity="critical"'], "receiver": "slack", "continue": True, "group_wait": "10s"},
                {
                    "matchers": ['severity=~"critical|warning"'],
                    "receiver": "email",
                    "group_by": ["target"],
                    "routes": [{"matchers": ['target="api"'], "receiver": "api-team", "repeat_interval": "1h"}],
                },
                {"matchers": ['severity="warning"'], "receiver": "never-reached"},
            ],
        }
    )


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"severity": "critical", "target": "generator"}, ["slack", "email"]),  # continue, then first match
        ({"severity": "critical", "target": "api"}, ["slack", "api-team"]),  # deepest match wins
        ({"severity": "warning", "target": "generator"}, ["email"]),  # stops at first match: not "never-reached"
        ({"severity": "info", "target": "generator"}, ["dashboard"]),  # no child matched: the root
        ({}, ["dashboard"]),
    ],
)
def test_routing_tree(labels: dict[str, str], receivers: list[str]) -> None:
    tree = build_tree(_tree())
    assert [n.receiver for n in match_routes(tree, labels)] == receivers


def test_children_inherit_settings() -> None:
    tree = build_tree(_tree())
    slack, email, _ = tree.routes
    api = email.routes[0]
    assert slack.group_wait == timedelta(seconds=10) and slack.group_interval == timedelta(minutes=5)
    assert slack.group_by == ("alertname", "target")
    assert email.group_by == ("target",) and api.group_by == ("target",)  # inherited from its parent
    assert api.repeat_interval == timedelta(hours=1) and api.group_wait == timedelta(seconds=30)


def test_route_keys_are_distinct_and_group_keys_name_the_labels() -> None:
    tree = build_tree(_tree())
    keys = [n.key for n in tree.walk()]
    assert len(set(keys)) == len(keys)
    node = tree.routes[1]
    labels = {"alertname": "x", "target": "api", "severity": "warning"}
    assert group_labels(node, labels) == {"target": "api"}
    assert group_key(node, group_labels(node, labels)).endswith(':{target="api"}')


def test_group_by_all_labels() -> None:
    tree = build_tree(Route.model_validate({"receiver": "r", "group_by": ["..."]}))
    labels = {"alertname": "x", "target": "api"}
    assert group_labels(tree, labels) == labels


def test_shipped_policy_routes_by_severity() -> None:
    tree = build_tree(load_policy(default_policy_path()).policy.alerting.route)
    route = {
        sev: [n.receiver for n in match_routes(tree, {"severity": sev})] for sev in ("critical", "warning", "info")
    }
    assert route == {"critical": ["slack-oncall"], "warning": ["ops-email"], "info": ["dashboard"]}
