"""Resolving a receiver's `SecretRef` (Slack webhook URL, SMTP password) at send time, never earlier.

Why at send time: a rotated secret (a new file in a mounted Kubernetes Secret, a restarted pod's
environment) is picked up without a policy reload, and a missing secret fails the notifications
of that one receiver (with a message naming *where* the secret should be) instead of the daemon.
The value is returned to the receiver only: it is never logged, stored, or put in an error.

`env` and `file` references are resolved here; `secret` (a Kubernetes Secret key) needs a reader
from the operator, passed in as `kube_reader(name, key) -> str`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from empire.errors import ConfigError
from empire.policies.common import SecretRef

__all__ = ["SecretResolver", "redact_in_logs", "resolve_secret"]

SecretResolver = Callable[[SecretRef], str]


def resolve_secret(ref: SecretRef, kube_reader: Callable[[str, str], str] | None = None) -> str:
    """The secret's value; a `ConfigError` naming the reference (not the value) when unavailable."""
    if ref.env:
        value = os.environ.get(ref.env)
        if not value:
            raise ConfigError(f"secret {ref.describe()}: the environment variable is not set")
        value = value.strip()
    elif ref.file:
        try:
            value = Path(ref.file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"secret {ref.describe()}: cannot read the file ({exc.strerror})") from None
    else:
        assert ref.secret is not None
        if kube_reader is None:
            raise ConfigError(f"secret {ref.describe()}: Kubernetes Secret references need the in-cluster reader")
        value = kube_reader(ref.secret.name, ref.secret.key).strip()
    if not value:
        raise ConfigError(f"secret {ref.describe()} is empty")
    redact_in_logs(value)
    return value


class _Redactor(logging.Filter):
    """Replaces known secret values in log records of HTTP client libraries (httpx logs every
    request URL at INFO, and a Slack webhook URL *is* the credential)."""

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
