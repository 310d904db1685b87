"""Redis: a connection helper and the shared rate limiter of the generation pools.

Why Redis for limits: an account's limit belongs to the account, not to a replica. With N agent
replicas, in-process token buckets would let each one spend the whole limit (N times too much);
one bucket per account in Redis, read-modified-written by one atomic Lua script, makes the
replicas together stay under it. The scripts read the time from Redis (`TIME`), so replicas'
clocks do not need to agree.

- Token bucket: a hash {tokens, ts} per account; the script refills, takes a token or returns the
  wait, and expires idle buckets.
- Request windows ("N per minute"): sliding, a sorted set of send times per account (members
  unique per request), trimmed to the window, one more added only under the limit; fixed, a hash
  {w, n} per account, the window's index on Redis' clock and its count.
- Concurrency slots: a sorted set per account, member = holder ("replica:job"), score = expiry.
  Expired holders are dropped first, so a crashed replica's slots come back after `ttl` seconds
  even though it never released them; live holders renew theirs with the lease heartbeat.

Connection failures surface as `TemporaryError` (retry), bad URLs and refused auth as
`ConfigError`/`PermanentError`; the URL is masked in every message.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from empire.config.urls import mask_url
from empire.errors import ConfigError, PermanentError, TemporaryError

if TYPE_CHECKING:
    from empire.agent.ports import Window

__all__ = ["RedisLimiter", "connect_redis", "redis_errors"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "empire:pool:"

_BUCKET = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
if now > ts then
  tokens = math.min(cap, tokens + (now - ts) * rate)
  ts = now
end
if tokens > cap then tokens = cap end
local wait = 0
if tokens >= want then
  tokens = tokens - want
else
  wait = (want - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(ts))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 60000)
return tostring(wait)
"""

_SLIDING = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local seconds = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - seconds)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(seconds * 1000) + 1000)
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(math.max(0.001, tonumber(oldest[2]) + seconds - now))
"""

_FIXED = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = tonumber(ARGV[1])
local seconds = tonumber(ARGV[2])
local margin = tonumber(ARGV[3])
local w = math.floor((now - margin) / seconds)
local v = redis.call('HMGET', KEYS[1], 'w', 'n')
local n = 0
if tonumber(v[1]) == w then n = tonumber(v[2]) end
if n < limit then
  redis.call('HSET', KEYS[1], 'w', string.format('%d', w), 'n', n + 1)
  redis.call('PEXPIRE', KEYS[1], math.ceil((seconds + margin) * 1000) + 1000)
  return '0'
end
return tostring((w + 1) * seconds + margin - now)
"""

_SLOT_ACQUIRE = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local holder = ARGV[1]
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], holder) then
  redis.call('ZADD', KEYS[1], now + ttl, holder)
  return 1
end
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now + ttl, holder)
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 60000)
  return 1
end
return 0
"""

_SLOT_RENEW = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 60000)
return 1
"""

_SLOT_COUNT = """
pcall(redis.replicate_commands)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


def redis_errors(url: str) -> Callable[[BaseException], Exception]:
    """A classifier of redis-py exceptions for this URL (masked)."""
    shown = mask_url(url)

    def classify(exc: BaseException) -> Exception:
        import redis.exceptions as rx

        first = (str(exc) or type(exc).__name__).splitlines()[0]
        if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError):
            return PermanentError(f"redis {shown}: {first}")
        if isinstance(exc, rx.ConnectionError | rx.TimeoutError | OSError | ConnectionError | TimeoutError):
            return TemporaryError(f"redis {shown} unreachable: {first}")
        if isinstance(exc, rx.BusyLoadingError | rx.TryAgainError):
            return TemporaryError(f"redis {shown}: {first}")
        return PermanentError(f"redis {shown}: {first}")

    return classify


def connect_redis(url: str, max_connections: int = 64, wait: float = 10.0, **kwargs: Any) -> Any:
    """A `redis.asyncio.Redis` client for `url` (lazy: connects on first use).

    The pool *blocks* when all `max_connections` are in use (up to `wait` seconds) instead of
    failing: hundreds of concurrent jobs asking for a slot at once must queue for a connection,
    not error out (redis-py's default pool raises "Too many connections" past 100)."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise ConfigError("redis support is not installed: pip install 'empire[redis]'") from None
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=wait, decode_responses=True, health_check_interval=30,
            **kwargs,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"invalid redis URL {mask_url(url)}: {exc}") from None
    return aioredis.Redis(connection_pool=pool)


class RedisLimiter:
    """The `RateLimiter` port shared by every replica through one Redis."""

    def __init__(self, url: str, prefix: str = PREFIX, client: Any | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self._client = client if client is not None else connect_redis(url)
        self._classify = redis_errors(url)
        self._bucket = self._client.register_script(_BUCKET)
        self._sliding = self._client.register_script(_SLIDING)
        self._fixed = self._client.register_script(_FIXED)
        self._acquire = self._client.register_script(_SLOT_ACQUIRE)
        self._renew = self._client.register_script(_SLOT_RENEW)
        self._count = self._client.register_script(_SLOT_COUNT)

    def __repr__(self) -> str:
        return f"RedisLimiter({mask_url(self.url)!r})"

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            raise self._classify(exc) from exc

    async def ping(self) -> None:
        await self._run(self._client.ping())

    async def try_acquire(self, key: str, rate: float, burst: float, window: Window | None = None) -> float:
        if window is None:
            call = self._bucket(keys=[f"{self.prefix}tb:{key}"], args=[repr(rate), repr(burst), "1"])
        elif window.kind == "sliding":
            call = self._sliding(keys=[f"{self.prefix}sw:{key}"],
                                 args=[window.limit, repr(window.seconds + window.margin), uuid.uuid4().hex])  # fmt: skip
        else:
            call = self._fixed(keys=[f"{self.prefix}fw:{key}"],
                               args=[window.limit, repr(window.seconds), repr(window.margin)])  # fmt: skip
        return float(await self._run(call))

    async def acquire_slot(self, key: str, holder: str, limit: int, ttl: float) -> bool:
        got = await self._run(self._acquire(keys=[f"{self.prefix}slots:{key}"], args=[holder, limit, repr(ttl)]))
        return int(got) == 1

    async def release_slot(self, key: str, holder: str) -> None:
        await self._run(self._client.zrem(f"{self.prefix}slots:{key}", holder))

    async def renew_slots(self, key: str, holders: list[str], ttl: float) -> None:
        if holders:
            await self._run(self._renew(keys=[f"{self.prefix}slots:{key}"], args=[repr(ttl), *holders]))

    async def slots_in_use(self, key: str) -> int:
        return int(await self._run(self._count(keys=[f"{self.prefix}slots:{key}"])))

    async def aclose(self) -> None:
        await self._client.aclose()
        await self._client.connection_pool.disconnect()
