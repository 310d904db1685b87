"""The one place a `SecretRef` becomes a value: environment variable, file, or Kubernetes Secret.

Why one module: the pools (provider API keys), alerting (Slack webhook URLs, SMTP passwords) and
tiering (S3 credentials) all name secrets the same way in the policy, and they must agree on what
"set" means (an empty or whitespace-only value is *not* set), on how a missing secret is reported
(a `ConfigError` naming the reference, `env:MUSIC_API_KEY_1` or `secret:music-api/key-2`, never
the value) and on where Kubernetes Secret references are read (the `KubernetesSecretReader` the
daemon builds when it finds a cluster; without one such a reference is a clear error).

The value comes back as a `SecretStr` (masked in every repr and log line); callers unwrap it only
where it is used (a request header, a boto3 client). Callers decide *when* to resolve: the pools
resolve when a provider is built, alerting at send time (so a rotated secret is picked up), S3
when its client is first needed. Nothing here caches: the Kubernetes reader has its own short TTL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from pydantic import SecretStr

from empire.boundedio import MAX_SMALL_FILE_BYTES, read_bounded_text
from empire.errors import ConfigError
from empire.policies.common import SecretRef

__all__ = ["SecretReader", "resolve_secret", "resolve_secret_value"]

SecretReader = Callable[[str, str], str]
"""`(secret name, key) -> value`: reads a Kubernetes Secret key (`agent.kube.kubesecrets.KubernetesSecretReader`)."""


def resolve_secret(
    ref: SecretRef,
    env: Mapping[str, str] | None = None,
    kubernetes: SecretReader | None = None,
) -> SecretStr:
    """The secret's value (surrounding whitespace stripped, e.g. a file's trailing newline).

    `env` replaces `os.environ` (tests); `kubernetes` reads `secret:` references. Raises
    `ConfigError` naming the reference when the secret is missing, unreadable or empty."""
    where = ref.describe()
    if ref.env is not None:
        raw = (os.environ if env is None else env).get(ref.env)
        if raw is None or not raw.strip():
            raise ConfigError(f"secret {where}: the environment variable {ref.env} is not set")
        value = raw
    elif ref.file is not None:
        try:
            value = read_bounded_text(ref.file, MAX_SMALL_FILE_BYTES, "secret file")
        except ConfigError as exc:  # names the path and the problem, never the content
            raise ConfigError(f"secret {where}: {str(exc).removeprefix(f'{ref.file}: ')}") from None
    else:
        assert ref.secret is not None
        if kubernetes is None:
            raise ConfigError(
                f"secret {where}: Kubernetes Secret references need the in-cluster reader (no cluster configured; "
                "use an env: or file: reference, or run in a cluster)"
            )
        try:
            value = kubernetes(ref.secret.name, ref.secret.key)
        except ConfigError as exc:
            raise ConfigError(f"secret {where}: {exc}") from None
    value = value.strip()
    if not value:
        raise ConfigError(f"secret {where} is empty")
    return SecretStr(value)


def resolve_secret_value(
    ref: SecretRef, env: Mapping[str, str] | None = None, kubernetes: SecretReader | None = None
) -> str:
    """`resolve_secret(...).get_secret_value()`, for the few callers that hand the value straight on."""
    return resolve_secret(ref, env, kubernetes).get_secret_value()
