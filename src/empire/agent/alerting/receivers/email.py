"""Email receiver: SMTP with optional STARTTLS and login, using the standard library in a worker thread.

Why `smtplib` in a thread rather than aiosmtplib: an alert email is a handful of messages per
group interval, so one blocking connection in `anyio.to_thread` costs nothing, and the standard
library's SMTP client is the most exercised one there is (STARTTLS, AUTH, 8BITMIME) with no extra
dependency to keep patched. The event loop is never blocked: the thread has a socket timeout.

Failures are classified by SMTP reply code: 4xx (greylisting, mailbox busy, temporary auth
failure), a dropped connection or a timeout are temporary; 5xx (recipient unknown, auth refused),
a server without STARTTLS when it is required, or a certificate that does not verify are
permanent. The password is resolved at send time and never appears in messages.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import anyio

from empire.agent.alerting.notification import Notification, render_text, title
from empire.errors import EmpireError, PermanentError, TemporaryError
from empire.policies.alerting import EmailReceiver as EmailConfig

__all__ = ["EmailReceiver", "email_message"]


def email_message(n: Notification, cfg: EmailConfig) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = title(n)
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.to)
    msg["Date"] = format_datetime(n.at)
    msg["Message-ID"] = make_msgid(domain=cfg.sender.rpartition("@")[2] or None)
    msg["X-Empire-Group-Key"] = n.group_key.replace("\n", " ")[:900]
    msg["X-Empire-Status"] = n.status
    msg.set_content(render_text(n) + "\n")
    return msg


def _by_code(what: str, code: int, text: bytes | str) -> EmpireError:
    detail = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    message = f"{what}: SMTP {code} {detail.strip()[:200]}"
    return TemporaryError(message) if 400 <= code < 500 else PermanentError(message)


class EmailReceiver:
    """`AlertSink` sending one email per notification through `smarthost`."""

    def __init__(self, name: str, cfg: EmailConfig, password: Callable[[], str] | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout: float = 30.0) -> None:  # fmt: skip
        self.name = name
        self.cfg = cfg
        self._password = password
        self._ssl_context = ssl_context
        self.timeout = timeout
        host, _, port = cfg.smarthost.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)

    def __repr__(self) -> str:
        return f"EmailReceiver({self.name!r}, {self.cfg.smarthost!r})"

    async def send(self, notification: Notification) -> None:
        msg = email_message(notification, self.cfg)
        password = self._password() if self.cfg.username and self._password else None
        await anyio.to_thread.run_sync(self._send, msg, password)

    def _send(self, msg: EmailMessage, password: str | None) -> None:
        what = f"email receiver {self.name}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                smtp.ehlo()
                if self.cfg.starttls:
                    if not smtp.has_extn("starttls"):
                        raise PermanentError(f"{what}: {self.cfg.smarthost} does not offer STARTTLS (starttls: true)")
                    smtp.starttls(context=self._ssl_context or ssl.create_default_context())
                    smtp.ehlo()
                if self.cfg.username:
                    if password is None:
                        raise PermanentError(f"{what}: username set but no password reference")
                    smtp.login(self.cfg.username, password)
                refused = smtp.send_message(msg)
        except EmpireError:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            code, text = next(iter(exc.recipients.values()))
            if all(400 <= c < 500 for c in codes):
                raise TemporaryError(f"{what}: recipients refused for now (SMTP {code})") from None
            raise _by_code(what, code, text) from None
        except smtplib.SMTPResponseException as exc:  # auth, sender, data errors: by reply code
            raise _by_code(what, exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"{what}: {exc}") from None
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"{what}: TLS certificate of {self.host} not trusted ({exc.verify_message})") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TemporaryError(f"{what}: {self.cfg.smarthost} unreachable ({type(exc).__name__}: {exc})") from None
        if refused:
            # Some recipients took it: retrying would duplicate it for them. Report, do not retry.
            raise PermanentError(f"{what}: refused by {len(refused)} of {len(self.cfg.to)} recipients")

    async def aclose(self) -> None:
        return None
