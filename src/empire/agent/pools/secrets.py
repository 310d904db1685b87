"""Resolving `SecretRef`s (env var, file) into values held as `SecretStr`.

The policy only ever names where a key lives. Values are read when a provider is built, kept in
`SecretStr` (masked in reprs) and used only to build a request header. A Kubernetes Secret
reference needs a reader (the operator passes one); without it the error says so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import SecretStr

from empire.errors import ConfigError
from empire.policies.common import SecretRef

__all__ = ["SecretReader", "resolve_secret"]

SecretReader = Callable[[str, str], str]  # (secret name, key) -> value


def resolve_secret(
    ref: SecretRef,
    env: Mapping[str, str] | None = None,
    kubernetes: SecretReader | None = None,
) -> SecretStr:
    environ = os.environ if env is None else env
    if ref.env is not None:
        value = environ.get(ref.env)
        if not value:
            raise ConfigError(f"secret {ref.describe()}: environment variable {ref.env} is not set")
        return SecretStr(value)
    if ref.file is not None:
        try:
            return SecretStr(Path(ref.file).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"secret {ref.describe()}: cannot read ({type(exc).__name__})") from None
    assert ref.secret is not None
    if kubernetes is None:
        raise ConfigError(f"secret {ref.describe()}: Kubernetes secret references need the in-cluster reader")
    return SecretStr(kubernetes(ref.secret.name, ref.secret.key))
