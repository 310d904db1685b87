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
- `PoolMetrics` (`monitor.group(PoolMetrics)`).
"""
