"""The email receiver against a real SMTP server in-process (aiosmtpd): plain, STARTTLS + AUTH,
and the failures that must be retried (server down, 4xx) or not (5xx, STARTTLS missing, bad login)."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from empire.agent.alerting.matching import fingerprint
from empire.agent.alerting.notification import AlertInstance, Notification
from empire.agent.alerting.receivers import EmailReceiver
from empire.errors import PermanentError, TemporaryError
from empire.policies.alerting import EmailReceiver as EmailConfig
from fakes.server import free_port

pytestmark = pytest.mark.anyio
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


@dataclass
class Inbox:
    messages: list[tuple[str, list[str], email.message.EmailMessage]] = field(default_factory=list)
    reject_rcpt: str | None = None  # "450 ..." or "550 ..."

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.reject_rcpt:
            return self.reject_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 Message accepted"


def _authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"empire" and data.password == b"s3cret-pw"
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it): a self-signed certificate for 127.0.0.1."""
    x509 = pytest.importorskip("cryptography.x509")
    import ipaddress

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    d: Path = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(d / "cert.pem", d / "key.pem")
    client = ssl.create_default_context(cafile=str(d / "cert.pem"))
    return server, client


@pytest.fixture
def smtp(request: pytest.FixtureRequest) -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    kwargs: dict[str, Any] = getattr(request, "param", {})
    if kwargs.get("tls"):
        server_ctx, _ = request.getfixturevalue("tls")
        kwargs = {"tls_context": server_ctx, "require_starttls": True, "authenticator": _authenticator,
                  "auth_required": True}  # fmt: skip
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def notification(status: str = "firing") -> Notification:
    labels = {"alertname": "api-slow", "target": "api", "signal": "latency", "severity": "warning"}
    a = AlertInstance(fingerprint(labels), "api-slow", "warning", labels,
                      {"summary": "p95 latency 41s above 30s", "explain": "empire explain api"},
                      NOW - dt.timedelta(minutes=5), NOW if status == "resolved" else None, 41.0)  # fmt: skip
    return Notification("ops-email", 'k:{alertname="api-slow"}', {"alertname": "api-slow", "target": "api"}, (a,),
                        NOW, NOW + dt.timedelta(hours=4))  # fmt: skip


def config(port: int, **kw: Any) -> EmailConfig:
    base = {"to": ["ops@example.com", "oncall@example.com"], "from": "empire@example.com",
            "smarthost": f"127.0.0.1:{port}", "starttls": False}  # fmt: skip
    return EmailConfig.model_validate({**base, **kw})


async def test_plain_smtp_delivers_one_readable_email(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    await EmailReceiver("ops-email", config(port)).send(notification())
    await EmailReceiver("ops-email", config(port)).send(notification("resolved"))
    [(sender, rcpts, msg), (_, _, resolved)] = inbox.messages
    assert sender == "empire@example.com" and rcpts == ["ops@example.com", "oncall@example.com"]
    assert msg["Subject"] == "[FIRING:1] api-slow (target=api)"
    body = msg.get_content()
    assert "[warning] p95 latency 41s above 30s" in body and "explain: empire explain api" in body
    assert resolved["Subject"] == "[RESOLVED:1] api-slow (target=api)" and "Resolved:" in resolved.get_content()


@pytest.mark.parametrize("smtp", [{"tls": True}], indirect=True)
async def test_starttls_and_login(smtp: tuple[Inbox, int], tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    inbox, port = smtp
    _, client_ctx = tls
    cfg = config(port, starttls=True, username="empire", password={"env": "UNUSED"})
    await EmailReceiver("ops-email", cfg, lambda: "s3cret-pw", client_ctx).send(notification())
    assert len(inbox.messages) == 1
    with pytest.raises(PermanentError, match="SMTP 535") as bad:
        await EmailReceiver("ops-email", cfg, lambda: "wrong-pw", client_ctx).send(notification())
    assert "wrong-pw" not in str(bad.value)
    # the server insists on STARTTLS but the policy says starttls: false -> 530, permanent
    with pytest.raises(PermanentError, match="SMTP 530"):
        await EmailReceiver("ops-email", config(port)).send(notification())
    # a certificate the client does not trust is not silently accepted
    with pytest.raises(PermanentError, match="not trusted"):
        await EmailReceiver("ops-email", cfg, lambda: "s3cret-pw").send(notification())
    assert len(inbox.messages) == 1


async def test_starttls_required_but_not_offered_is_permanent(smtp: tuple[Inbox, int]) -> None:
    _, port = smtp
    with pytest.raises(PermanentError, match="does not offer STARTTLS"):
        await EmailReceiver("ops-email", config(port, starttls=True)).send(notification())


async def test_server_down_is_temporary() -> None:
    with pytest.raises(TemporaryError, match="unreachable"):
        await EmailReceiver("ops-email", config(free_port())).send(notification())


@pytest.mark.parametrize(
    ("reply", "error"), [("450 mailbox busy", TemporaryError), ("550 no such user", PermanentError)]
)
async def test_recipient_refusal_by_code(smtp: tuple[Inbox, int], reply: str, error: type[Exception]) -> None:
    inbox, port = smtp
    inbox.reject_rcpt = reply
    with pytest.raises(error):
        await EmailReceiver("ops-email", config(port)).send(notification())
    assert inbox.messages == []
