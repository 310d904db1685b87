"""Slack (a real local webhook server) and Alertmanager (the real one) receivers."""

from __future__ import annotations

import base64
import logging
import os
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.alerting.receivers import AlertmanagerReceiver, SlackReceiver, build_receivers
from empire.errors import PermanentError, TemporaryError
from empire.policies.alerting import AlertingPolicy
from fakes.server import free_port
from fakes.webhook import FakeWebhook

pytestmark = pytest.mark.anyio
NOW = datetime.now(UTC).replace(microsecond=0)


def notification(status: str = "firing", name: str = "queue-anomaly", target: str = "generator") -> Notification:
    labels = {"alertname": name, "target": target, "signal": "queue", "severity": "critical"}
    a = AlertInstance(
        fingerprint(labels), name, "critical", labels,
        {"summary": f"unusual queue on {target}: 1234", "explain": f"empire explain {target}"},
        NOW - timedelta(minutes=5), NOW if status == "resolved" else None, 1234.0,
    )  # fmt: skip
    return Notification("oncall", '{}:{alertname="x"}', {"alertname": name}, (a,), NOW, NOW + timedelta(hours=4))


async def test_slack_posts_the_message_and_keeps_the_webhook_url_secret(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = FakeWebhook()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")  # `empire` CLI tests earlier in the run quiet httpx
    with hook.serve() as base:
        secret_url = f"{base}/services/T000/B000/XXXXsecretXXXX"
        monkeypatch.setenv("TEST_SLACK_URL", secret_url)
        policy = AlertingPolicy.model_validate(
            {"receivers": [{"name": "oncall", "slack": {"webhook_url": {"env": "TEST_SLACK_URL"}, "channel": "#ops"}}],
             "route": {"receiver": "oncall"}}
        )  # fmt: skip
        async with httpx.AsyncClient() as client:
            sink = build_receivers(policy, client)["oncall"]
            assert isinstance(sink, SlackReceiver)
            await sink.send(notification())
            await sink.send(notification("resolved"))
            hook.fail_next(500)
            with pytest.raises(TemporaryError) as temp:
                await sink.send(notification())
            hook.fail_next(429, retry_after=7)
            with pytest.raises(TemporaryError) as limited:
                await sink.send(notification())
            hook.fail_next(404, body="no_service")
            with pytest.raises(PermanentError) as perm:
                await sink.send(notification())
    [firing, resolved] = hook.received
    assert firing.path == "/services/T000/B000/XXXXsecretXXXX"
    assert firing.body["channel"] == "#ops"
    text = firing.body["text"]
    assert text.startswith("*[FIRING:1] queue-anomaly*") and "unusual queue on generator: 1234" in text
    assert "`empire explain generator`" in text
    assert resolved.body["text"].startswith("*[RESOLVED:1]") and "(resolved)" in resolved.body["text"]
    assert limited.value.delay == 7
    assert "no_service" in str(perm.value)
    # the webhook URL is the credential: in no error message and no log line (httpx logs URLs at INFO)
    for msg in (str(temp.value), str(limited.value), str(perm.value), caplog.text, repr(sink)):
        assert "XXXXsecretXXXX" not in msg
    assert "HTTP Request: POST" in caplog.text  # httpx did log the request, redacted


async def test_slack_unreachable_is_temporary() -> None:
    url = f"http://127.0.0.1:{free_port()}/hook-secret-path"
    async with httpx.AsyncClient() as client:
        with pytest.raises(TemporaryError) as exc:
            await SlackReceiver("oncall", lambda: url, client).send(notification())
        assert "hook-secret-path" not in str(exc.value) and "unreachable" in str(exc.value)


AM_URL = os.environ.get("EMPIRE_TEST_ALERTMANAGER_URL")


@pytest.mark.alertmanager  # conftest.require_service: skipped without Alertmanager, failed in CI
async def test_alertmanager_receives_firing_then_resolved_alert() -> None:
    assert AM_URL
    name = f"empire-test-{os.getpid()}-{datetime.now(UTC).timestamp():.0f}"
    query = {"filter": f'alertname="{name}"'}
    async with httpx.AsyncClient() as client:
        sink = AlertmanagerReceiver("am", AM_URL, client)
        await sink.send(notification(name=name, target="api"))
        got = (await client.get(f"{AM_URL}/api/v2/alerts", params=query)).json()
        assert len(got) == 1
        alert = got[0]
        assert alert["labels"] == {"alertname": name, "target": "api", "signal": "queue", "severity": "critical"}
        assert alert["annotations"]["summary"] == "unusual queue on api: 1234"
        assert alert["annotations"]["explain"] == "empire explain api"
        assert alert["status"]["state"] == "active"
        ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
        assert ends > datetime.now(UTC) + timedelta(hours=3)  # kept alive until our next repeat
        await sink.send(notification(name=name, target="api"))  # a retry: Alertmanager deduplicates
        assert len((await client.get(f"{AM_URL}/api/v2/alerts", params=query)).json()) == 1
        await sink.send(notification("resolved", name=name, target="api"))
        assert (await client.get(f"{AM_URL}/api/v2/alerts", params=query)).json() == []


@pytest.mark.alertmanager  # conftest.require_service: skipped without Alertmanager, failed in CI
async def test_alertmanager_rejects_invalid_alerts_permanently() -> None:
    assert AM_URL
    bad = notification()
    bad = Notification(bad.receiver, bad.group_key, {}, (AlertInstance("f", "x", "info", {}, {}, NOW),), NOW, NOW)
    async with httpx.AsyncClient() as client:
        with pytest.raises(PermanentError, match="HTTP 400"):
            await AlertmanagerReceiver("am", AM_URL, client).send(bad)  # no labels: Alertmanager says 400


async def test_alertmanager_down_is_temporary() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(TemporaryError):
            await AlertmanagerReceiver("am", f"http://127.0.0.1:{free_port()}", client).send(notification())


async def test_alertmanager_basic_auth_comes_from_a_secret_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Alertmanager behind a proxy with basic auth: the password is a secret reference, read at
    send time (so a rotation needs no reload), never part of the URL the policy stores."""
    hook = FakeWebhook()
    with hook.serve() as base:
        policy = AlertingPolicy.model_validate(
            {"receivers": [{"name": "am", "alertmanager": {"url": base, "username": "empire",
                                                           "password": {"env": "TEST_AM_PASSWORD"}}}],
             "route": {"receiver": "am"}}
        )  # fmt: skip
        async with httpx.AsyncClient() as client:
            sink = build_receivers(policy, client)["am"]
            monkeypatch.setenv("TEST_AM_PASSWORD", "first-Pw-123")
            await sink.send(notification())
            monkeypatch.setenv("TEST_AM_PASSWORD", "rotated-Pw-456")
            await sink.send(notification("resolved"))
    assert [r.path for r in hook.received] == ["/api/v2/alerts"] * 2
    assert [r.headers["authorization"] for r in hook.received] == [
        "Basic " + base64.b64encode(f"empire:{pw}".encode()).decode() for pw in ("first-Pw-123", "rotated-Pw-456")
    ]
    assert "Pw" not in repr(sink)
