"""Alerting's use of secrets: resolved at send time through `empire.config.secrets`, and kept out
of HTTP client logs.

Why at send time: a rotated secret (a new file in a mounted Kubernetes Secret, a restarted pod's
environment) is picked up without a policy reload, and a missing secret fails the notifications
of that one receiver (with a message naming *where* the secret should be) instead of the daemon.

Why the redaction lives here and not in the shared resolver: a Slack webhook URL *is* the
credential, and httpx logs every request URL at INFO. The receivers are the only code that puts a
secret into a URL, so it is alerting's resolver that registers each value it hands out with the
filter on the `httpx`/`httpcore` loggers. Provider keys and S3 credentials only ever travel in
headers and client arguments, which nothing logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from empire.config.secrets import SecretReader
from empire.config.secrets import resolve_secret as resolve_ref
from empire.policies.common import SecretRef

__all__ = ["SecretResolver", "redact_in_logs", "resolve_secret", "resolver"]

SecretResolver = Callable[[SecretRef], str]


def resolve_secret(ref: SecretRef, kube_reader: SecretReader | None = None) -> str:
    """The secret's value, registered for log redaction; a `ConfigError` naming the reference
    (not the value) when unavailable."""
    value = resolve_ref(ref, kubernetes=kube_reader).get_secret_value()
    redact_in_logs(value)
    return value


def resolver(kube_reader: SecretReader | None = None) -> SecretResolver:
    """A `SecretResolver` for `build_receivers` that can also read Kubernetes Secret references."""
    return lambda ref: resolve_secret(ref, kube_reader)


class _Redactor(logging.Filter):
    """Replaces known secret values in log records of HTTP client libraries."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to fix
            return True
        redacted = message
        for s in self.secrets:
            if s in redacted:
                redacted = redacted.replace(s, "<redacted>")
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_REDACTOR = _Redactor()
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_REDACTOR)


def redact_in_logs(secret: str) -> None:
    """Make sure `secret` never appears in httpx/httpcore log lines."""
    if len(secret) >= 8:
        _REDACTOR.secrets.add(secret)
