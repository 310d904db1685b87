"""What receivers send (Slack text, email, Alertmanager alerts), retry timing, and label validation. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.notification import AlertInstance, Notification, render_text, title
from empire.agent.alerting.outbox import Backoff
from empire.agent.alerting.receivers.alertmanager import postable_alerts
from empire.agent.alerting.receivers.email import email_message
from empire.agent.alerting.receivers.slack import slack_message
from empire.agent.httpretry import parse_retry_after
from empire.policies.alerting import EmailReceiver
from empire.policies.errors import PolicyError
from empire.policies.schema import parse_policy

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def inst(name: str, target: str, resolved: bool = False, **ann: str) -> AlertInstance:
    labels = {"alertname": name, "target": target, "severity": "critical"}
    annotations = {"summary": f"{name} on {target} <b>&", "explain": f"empire explain {target}", **ann}
    return AlertInstance(
        fingerprint(labels), name, "critical", labels, annotations, T0, T0 + timedelta(minutes=9) if resolved else None
    )


def note(*alerts: AlertInstance) -> Notification:
    return Notification("oncall", "k", {"alertname": "a"}, alerts, T0 + timedelta(minutes=10), T0 + timedelta(hours=5))


def test_title_counts_the_status_alerts() -> None:
    assert title(note(inst("a", "api"), inst("a", "web", True))) == "[FIRING:1] a"
    assert title(note(inst("a", "web", True))) == "[RESOLVED:1] a"


def test_slack_text_escapes_and_links() -> None:
    body = slack_message(note(inst("a", "api", link="https://e.example/alerts?target=api"), inst("a", "web", True)))
    lines = body["text"].splitlines()
    assert lines[0] == "*[FIRING:1] a*" and "channel" not in body
    assert "a on api &lt;b&gt;&amp;" in lines[1] and "`empire explain api`" in lines[1]
    assert "<https://e.example/alerts?target=api|details>" in lines[1]
    assert lines[2].startswith(":white_check_mark:") and lines[2].endswith("(resolved)")


def test_plain_text_body_lists_firing_then_resolved() -> None:
    text = render_text(note(inst("a", "api"), inst("a", "web", True)))
    assert text.index("Firing:") < text.index("Resolved:") and "explain: empire explain web" in text


def test_email_headers() -> None:
    cfg = EmailReceiver.model_validate({"to": ["a@x.io", "b@x.io"], "from": "empire@x.io", "smarthost": "mx:25"})
    msg = email_message(note(inst("a", "api")), cfg)
    assert (msg["To"], msg["From"], msg["Subject"]) == ("a@x.io, b@x.io", "empire@x.io", "[FIRING:1] a")
    assert msg["X-Empire-Status"] == "firing" and msg["Message-ID"].endswith("@x.io>")


def test_alertmanager_alerts_carry_ends_at() -> None:
    firing, resolved = postable_alerts(note(inst("a", "api"), inst("a", "web", True)))
    assert firing["endsAt"] == "2026-03-01T17:00:00Z"  # the notification's expiry: kept alive until the next repeat
    assert resolved["endsAt"] == "2026-03-01T12:09:00Z" and firing["startsAt"] == "2026-03-01T12:00:00Z"
    assert "generatorURL" not in firing and firing["labels"]["target"] == "api"


@pytest.mark.parametrize(("attempts", "after", "delay"), [(1, None, 2), (2, None, 4), (5, None, 32), (30, None, 600),
                                                          (3, 45.0, 45), (1, 99999.0, 3600), (1, -3.0, 0)])  # fmt: skip
def test_backoff(attempts: int, after: float | None, delay: float) -> None:
    assert Backoff().delay(attempts, after) == delay


def test_retry_after_header_forms() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Sun, 01 Mar 2026 12:00:30 GMT", now) == 30


@pytest.mark.parametrize(
    ("labels", "message"), [({"team-name": "x"}, "must match"), ({"severity": "x"}, "set by empire")]
)
def test_rule_label_names_are_checked(labels: dict[str, str], message: str) -> None:
    body = {
        "targets": [{"name": "api", "workload": {"name": "api"}, "max_replicas": 3,
                     "signals": [{"name": "latency", "query": "q", "target": 30}]}],
        "alerting": {"rules": [{"name": "r", "kind": "threshold", "target": "api", "signal": "latency",
                                "threshold": 1, "labels": labels}]},
    }  # fmt: skip
    with pytest.raises(PolicyError, match=message):
        parse_policy(body)
