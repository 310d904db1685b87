"""Generation through API pools: accounts, limits, routing, retries, durable jobs, budgets.

Public surface (everything else is an implementation module):
- `JobQueue`, `NewJob`, `Job`, `JobState`, `JobPriority`: the durable queue in the state DB;
- `Dispatcher`, `DispatcherOptions`, `build_dispatcher`, `build_adapters`: running jobs;
- `LocalLimiter` (and `empire.state.redis.RedisLimiter`): the `RateLimiter` port;
- `plan_generation`, `GenerateExecutor`: personas' cadence -> `Generate` actions -> jobs;
- `HoldStore`, `HoldExecutor`: paused personas and drained accounts (alert remediations), durable;
- `PoolsRuntime`, `GenerationPlanner`: the pools as `empire run` runs them (`pools.setup`);
- `ContentPublisher`, `ContentSink`, `StorageContentSink`, `DirectoryContentSink`,
  `check_compliance`: results -> content objects;
- `PoolMetrics` (`Monitor.pools`).
"""

from empire.agent.pools.bucket import LocalLimiter, TokenBucket
from empire.agent.pools.budget import BudgetLimits
from empire.agent.pools.build import budget_limits, build_adapters, build_dispatcher
from empire.agent.pools.compliance import ComplianceResult, check_compliance
from empire.agent.pools.dispatcher import Dispatcher, DispatcherOptions
from empire.agent.pools.errors import ErrorClass
from empire.agent.pools.executor import GenerateExecutor
from empire.agent.pools.holds import HoldExecutor, Holds, HoldStore
from empire.agent.pools.metrics import PoolMetrics
from empire.agent.pools.model import Job, JobPriority, JobState, NewJob, Spend
from empire.agent.pools.planner import GenerationPlan, plan_generation
from empire.agent.pools.planning import GenerationPlanner
from empire.agent.pools.publish import (
    ContentMeta,
    ContentPublisher,
    ContentSink,
    DirectoryContentSink,
    StorageContentSink,
)
from empire.agent.pools.queue import JobQueue
from empire.agent.pools.runtime import PoolsRuntime

__all__ = [
    "BudgetLimits",
    "ComplianceResult",
    "ContentMeta",
    "ContentPublisher",
    "ContentSink",
    "DirectoryContentSink",
    "Dispatcher",
    "DispatcherOptions",
    "ErrorClass",
    "GenerateExecutor",
    "GenerationPlan",
    "GenerationPlanner",
    "HoldExecutor",
    "HoldStore",
    "Holds",
    "Job",
    "JobPriority",
    "JobQueue",
    "JobState",
    "LocalLimiter",
    "NewJob",
    "PoolMetrics",
    "PoolsRuntime",
    "Spend",
    "StorageContentSink",
    "TokenBucket",
    "budget_limits",
    "build_adapters",
    "build_dispatcher",
    "check_compliance",
    "plan_generation",
]
