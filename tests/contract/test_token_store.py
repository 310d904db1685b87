"""One contract for every TokenStore: the memory twin, SQLite and PostgreSQL behave alike; and the
Authenticator over it (digests compared, revoked and expired tokens refused, the lookup cached)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from empire.agent.api.auth import Authenticator, Denied, Principal, Scope, TokenRecord, TokenStore, new_token
from empire.agent.api.memory import MemoryTokenStore
from empire.errors import ConfigError
from empire.state.database import Database
from empire.state.tokens import SqlTokenStore

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[TokenStore]:
    if request.param == "memory":
        yield MemoryTokenStore()
        return
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}" if request.param == "sqlite" else request.getfixturevalue(
        "postgres_url")  # fmt: skip
    db = await Database.open(url)
    try:
        yield SqlTokenStore(db)
    finally:
        await db.close()


async def make(store: TokenStore, name: str, scope: Scope = Scope.read, **kw) -> tuple[str, TokenRecord]:
    text, token_id, digest = new_token()
    record = TokenRecord(token_id, name, (scope,), digest, T0, "test", **kw)
    await store.add(record)
    return text, record


async def test_add_list_revoke(store: TokenStore) -> None:
    _, a = await make(store, "a", Scope.write)
    _, b = await make(store, "b", expires_at=T0 + timedelta(days=1))
    assert [r.name for r in await store.list()] == ["a", "b"]
    assert await store.by_id(a.id) == a and await store.by_id("ffffffff") is None
    with pytest.raises(ConfigError, match="exists"):
        await make(store, "a")
    revoked = await store.revoke("a", T0 + timedelta(hours=1))
    assert revoked is not None and revoked.revoked_at == T0 + timedelta(hours=1)
    assert await store.revoke("a", T0) is None  # nothing active by that name any more
    assert [r.name for r in await store.list()] == ["b"]
    assert [(r.name, r.state(T0)) for r in await store.list(include_revoked=True)] == [
        ("a", "revoked"),
        ("b", "active"),
    ]
    assert (await store.by_id(b.id)).state(T0 + timedelta(days=2)) == "expired"
    await make(store, "a")  # the name is free again


async def test_the_authenticator_compares_digests_and_caches_lookups(store: TokenStore) -> None:
    now, mono = [T0], [0.0]
    text, _ = await make(store, "ci", Scope.write)
    auth = Authenticator(store, lambda: now[0], monotonic=lambda: mono[0])
    found = await auth.authenticate(f"Bearer {text}")
    assert isinstance(found, Principal) and found.name == "ci" and found.may(Scope.read, "/v1/jobs")
    assert not found.may(Scope.admin, "/v1/audit")
    wrong = text[:-1] + ("A" if text[-1] != "A" else "B")
    assert await auth.authenticate(f"Bearer {wrong}") == Denied("invalid bearer token")
    assert await auth.authenticate("Bearer emp_00000000_x") == Denied("invalid bearer token")
    assert await auth.authenticate("Basic abc") == Denied("expected Authorization: Bearer <token>")
    assert await auth.authenticate(None) is None
    await store.revoke("ci", T0)
    assert isinstance(await auth.authenticate(f"Bearer {text}"), Principal)  # cached for 5 s
    mono[0] = 5.0
    assert await auth.authenticate(f"Bearer {text}") == Denied("token 'ci' is revoked")
