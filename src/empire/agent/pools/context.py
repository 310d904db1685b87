"""Opening the pools outside the daemon (CLI, `empire pools run`): settings -> policy, database,
queue and limiter, closed again on exit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from empire.agent.pools.bucket import LocalLimiter
from empire.agent.pools.build import budget_limits
from empire.agent.pools.queue import JobQueue
from empire.agent.ports import RateLimiter
from empire.config.settings import Settings
from empire.policies.loading import load_policy
from empire.policies.schema import Policy
from empire.state.database import Database
from empire.state.jobs import SqlJobQueue

__all__ = ["PoolsContext", "open_pools"]


@dataclass
class PoolsContext:
    settings: Settings
    policy: Policy
    db: Database
    queue: JobQueue
    limiter: RateLimiter
    shared: bool  # the limiter is Redis (replicas share limits)


@asynccontextmanager
async def open_pools(
    settings: Settings, policy_file: str | None = None, *, readonly: bool = False
) -> AsyncIterator[PoolsContext]:
    """`readonly` for `empire pools status`: the database must exist at the newest schema and the
    connection refuses writes."""
    policy = load_policy(settings.policy_path(policy_file)).policy
    async with AsyncExitStack() as stack:
        url = settings.database_url_value
        db = await (Database.open_readonly(url) if readonly else Database.open(url))
        stack.push_async_callback(db.close)
        limiter: RateLimiter
        if settings.redis_url is not None:
            from empire.state.redis import RedisLimiter

            limiter = RedisLimiter(settings.redis_url.get_secret_value())
            stack.push_async_callback(limiter.aclose)
        else:
            limiter = LocalLimiter()
        yield PoolsContext(settings, policy, db, SqlJobQueue(db, budget_limits(policy)), limiter,
                           settings.redis_url is not None)  # fmt: skip
