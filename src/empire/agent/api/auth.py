"""Who is calling the agent's API, and what may they do: named tokens with scopes.

A token is `emp_<id>_<secret>`: the id (8 hex characters) names the row to look up, the secret
(32 random bytes, URL-safe base64) is what proves possession. The database keeps only the
secret's SHA-256 digest, never the token itself: a copy of the state database (a backup, a
`pg_dump` for a bug report) grants nothing. The digest is compared with `hmac.compare_digest`, so
how long a refusal takes says nothing about how much of a guess matched.

Why SHA-256 and not bcrypt/argon2: those are for passwords, which people choose and which are
guessable; a slow hash makes each guess expensive. A token here is 256 random bits: no guess
succeeds at any speed, and a slow hash would only hand a flood of bad requests a way to spend
our CPU (GitHub's and PyPI's API tokens are checked the same way).

Scopes are ordered: `admin` includes `write`, `write` includes `read`.

* read   every GET of /v1 (jobs, content, alerts, silences, decisions, status), /metrics and
         /status when they are protected
* write  submit/cancel/retry jobs, ingest access and revenue, add and expire silences
* admin  the audit log over HTTP

Other ways in, each a `Principal` like a token's:

* `EMPIRE_INGEST_TOKEN` (kept from before /v1): the content ingest endpoints only, scope write;
* a Kubernetes ServiceAccount token, when `EMPIRE_HTTP__KUBERNETES_AUTH` is on: the API server
  says who it is (TokenReview) and its RBAC says what it may do (SubjectAccessReview), as
  kube-rbac-proxy and metrics-server do (`empire.agent.api.kube`).

A token looked up is cached for `cache_seconds` (5 s): `empire tokens revoke` takes effect within
that time on every replica, and a burst of requests costs one database read, not one each.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

__all__ = [
    "Authenticator",
    "Denied",
    "Principal",
    "Scope",
    "TokenRecord",
    "TokenStore",
    "digest",
    "new_token",
    "parse_token",
]

PREFIX = "emp"


class Scope(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"


_RANK = {Scope.read: 0, Scope.write: 1, Scope.admin: 2}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `only` limits it to these paths (the legacy ingest token)."""

    name: str
    scopes: frozenset[Scope]
    via: str  # token | kubernetes | settings
    only: frozenset[str] | None = None
    # Kubernetes principals are authorized per request by the API server, not by their scopes:
    authorize: Callable[[str, str], Awaitable[bool]] | None = field(default=None, compare=False, repr=False)

    def may(self, required: Scope, path: str) -> bool:
        if self.only is not None and path not in self.only:
            return False
        return any(_RANK[s] >= _RANK[required] for s in self.scopes)


@dataclass(frozen=True)
class Denied:
    """Credentials were presented and refused (401): the message says why, never the token."""

    message: str


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    scopes: tuple[Scope, ...]
    digest: str  # sha256 hex of the secret part
    created_at: datetime
    created_by: str
    expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class TokenStore(Protocol):
    """Where tokens are kept (the state database; `MemoryTokenStore` is the twin). Names are
    unique among tokens that are not revoked; a revoked token's row stays for the audit trail."""

    async def add(self, record: TokenRecord) -> None: ...

    async def by_id(self, token_id: str) -> TokenRecord | None: ...

    async def list(self, include_revoked: bool = False) -> list[TokenRecord]: ...

    async def revoke(self, name: str, at: datetime) -> TokenRecord | None: ...


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(token to show once, its id, the digest to store)."""
    token_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{token_id}_{secret}", token_id, digest(secret)


def parse_token(text: str) -> tuple[str, str] | None:
    """(id, secret) of a token of ours, or None when the text is not shaped like one."""
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 8 or not parts[2]:
        return None
    if not all(c in "0123456789abcdef" for c in parts[1]):
        return None
    return parts[1], parts[2]


class Authenticator:
    """Bearer header -> `Principal` (valid), `Denied` (presented, refused) or None (none presented)."""

    def __init__(
        self,
        store: TokenStore,
        now: Callable[[], datetime],
        *,
        legacy_ingest: str | None = None,
        ingest_paths: frozenset[str] = frozenset(),
        external: Callable[[str], Awaitable[Principal | Denied | None]] | None = None,
        cache_seconds: float = 5.0,
        cache_size: int = 1024,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.now = store, now
        self._legacy = legacy_ingest.encode() if legacy_ingest else None
        self._ingest_paths = ingest_paths
        self.external = external
        self.cache_seconds, self._cache_size, self._mono = cache_seconds, cache_size, monotonic
        self._cache: OrderedDict[str, tuple[float, TokenRecord | None]] = OrderedDict()

    def forget(self, token_id: str | None = None) -> None:
        """Drop cached lookups (one, or all): a revocation in this process applies at once."""
        if token_id is None:
            self._cache.clear()
        else:
            self._cache.pop(token_id, None)

    async def authenticate(self, authorization: str | None) -> Principal | Denied | None:
        if not authorization:
            return None
        scheme, _, given = authorization.partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return Denied("expected Authorization: Bearer <token>")
        parsed = parse_token(given)
        if parsed is None:
            if self._legacy is not None and hmac.compare_digest(given.encode(), self._legacy):
                return Principal("ingest-token", frozenset({Scope.write}), "settings", only=self._ingest_paths)
            if self.external is not None:
                found = await self.external(given)
                if found is not None:
                    return found
            return Denied("invalid bearer token")
        token_id, secret = parsed
        record = await self._lookup(token_id)
        # compared even when no row was found, so a miss and a wrong secret take the same time
        expected = record.digest if record is not None else "0" * 64
        if not hmac.compare_digest(digest(secret), expected) or record is None:
            return Denied("invalid bearer token")
        state = record.state(self.now())
        if state != "active":
            return Denied(f"token {record.name!r} is {state}")
        return Principal(record.name, frozenset(record.scopes), "token")

    async def _lookup(self, token_id: str) -> TokenRecord | None:
        hit = self._cache.get(token_id)
        now = self._mono()
        if hit is not None and now - hit[0] < self.cache_seconds:
            self._cache.move_to_end(token_id)
            return hit[1]
        record = await self.store.by_id(token_id)
        self._cache[token_id] = (now, record)
        self._cache.move_to_end(token_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return record
