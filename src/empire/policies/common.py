"""Shared building blocks of the policy models: the strict base model, names, URLs, secret references.

Every policy model is frozen (a loaded policy is a value that can be swapped atomically, never
mutated under the loop's feet) and forbids unknown keys (a typo must be an error, not a silently
ignored setting).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

__all__ = ["NAME_PATTERN", "Name", "SecretRef", "StrictModel", "Url", "find_duplicates"]


class StrictModel(BaseModel):
    """Frozen, no unknown keys, validated on assignment-free construction only."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"

Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN, max_length=63),
    Field(description="lower-case letters, digits, '.', '_' and '-'; starts and ends alphanumeric"),
]
"""A policy-local identifier (target, provider, account, persona, receiver, tier, rule)."""


def _no_credentials(url: str) -> str:
    """Refuse `user:password@` in a URL. Why: the policy is not a secret store; it is saved in the
    state database with every version (`policy_versions`), printed by `empire policy show` and
    held in the EmpireConfig resource. Credentials go in the field's secret reference instead."""
    if "@" in urlsplit(url).netloc:
        raise ValueError(
            "a URL in the policy must not carry credentials (user:password@): the policy is stored in the "
            "state database and shown by `empire policy show`; give them as a secret reference instead "
            "(api_key, password, access_key_id/secret_access_key)"
        )
    return url


Url = Annotated[str, AfterValidator(_no_credentials)]
"""A URL in the policy: never with `user:password@` (the error does not repeat the value)."""


class KubernetesSecretKey(StrictModel):
    name: str = Field(description="Secret name in the agent's namespace")
    key: str = Field(description="key inside the Secret's data")


class SecretRef(StrictModel):
    """Where a secret lives: never the secret itself.

    Exactly one of ``env`` (an environment variable), ``file`` (a mounted file, e.g. a Kubernetes
    Secret volume) or ``secret`` (a Kubernetes Secret key, read from the API) is set. The policy,
    the CR and the database therefore never hold a credential.
    """

    env: str | None = Field(default=None, description="environment variable holding the secret")
    file: str | None = Field(default=None, description="path of a file holding the secret")
    secret: KubernetesSecretKey | None = Field(default=None, description="Kubernetes Secret key")

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "secret") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"a secret reference needs exactly one of env, file, secret (got {given or 'none'})")
        return self

    def describe(self) -> str:
        """Where the secret comes from, for messages (never the value)."""
        if self.env:
            return f"env:{self.env}"
        if self.file:
            return f"file:{self.file}"
        assert self.secret is not None
        return f"secret:{self.secret.name}/{self.secret.key}"


def find_duplicates(names: list[str]) -> list[str]:
    seen: set[str] = set()
    dups: list[str] = []
    for n in names:
        if n in seen and n not in dups:
            dups.append(n)
        seen.add(n)
    return dups
