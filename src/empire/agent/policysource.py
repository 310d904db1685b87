"""Where the policy in force comes from: the policy file, or the state DB the operator writes to.

Both sources look the same to the daemon: `current` (the `LoadedPolicy` in force), `last_error`
(why the last candidate was rejected, or None), `interval`, `where` and an async `check()` that
answers "was a new policy swapped in?". `FilePolicySource` wraps the hot-reloading `PolicyWatcher`;
`DbPolicySource` follows the latest *applied* row of `policy_versions` (written by the operator's
`empire.operator.handoff`). They live here, below the operator, so the agent never imports the
operator package (an `.importlinter` contract).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import yaml

from empire.errors import TemporaryError
from empire.policies.errors import PolicyError
from empire.policies.loading import LoadedPolicy, PolicyWatcher
from empire.policies.schema import IDLE_POLICY, parse_policy, policy_version

__all__ = ["DbPolicySource", "FilePolicySource", "OnChange", "PolicySource", "database_source"]

logger = logging.getLogger(__name__)

OnChange = Callable[[LoadedPolicy], Awaitable[None] | None]


class FilePolicySource:
    """`PolicyWatcher` behind the same async `check()` as `DbPolicySource`."""

    def __init__(self, watcher: PolicyWatcher) -> None:
        self.watcher = watcher
        self.interval = watcher.interval

    @property
    def current(self) -> LoadedPolicy:
        return self.watcher.current

    @property
    def last_error(self) -> str | None:
        return self.watcher.last_error

    @property
    def where(self) -> str:
        return str(self.watcher.path)

    async def check(self) -> bool:
        return await self.watcher.check_async()


class DbPolicySource:
    """Follow the latest applied policy version in the state DB; hand each new valid one to `on_change`.

    The agent-side half of the hand-off, shaped like `PolicyWatcher`: `check()` polls once and
    answers "was a new policy swapped in?", `run()` polls every `interval` seconds forever, and
    `current` is the `LoadedPolicy` in force (None until the DB has one). The body is validated
    again here (an agent of another release may read a version written by an older operator);
    a version that fails is logged once and skipped, and `current` stays. `on_change` may be a
    plain function or a coroutine function.
    """

    def __init__(
        self,
        store: Any,
        on_change: OnChange | None = None,
        interval: float = 5.0,
        current: LoadedPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self.store = store
        self.on_change = on_change
        self.interval = interval
        self.current = current
        self._sleep = sleep
        self._seen: str | None = current.version if current is not None else None
        self.last_error: str | None = None
        self.where = "state database (policy_versions)"

    async def check(self) -> bool:
        """Poll once. True when a new valid policy was swapped in. DB errors propagate (TemporaryError)."""
        row = await self.store.latest_policy_version()
        if row is None or row["version"] == self._seen:
            return False
        self._seen = row["version"]
        source = str(row.get("source") or "state database")
        body = row.get("body") or {}
        try:
            policy = parse_policy(body, source=f"policy version {row['version']} ({source})")
        except PolicyError as exc:
            self.last_error = str(exc)
            logger.error("policy version %s from the state DB rejected, keeping %s:\n%s", row["version"],
                         self.current.version if self.current else "none", exc)  # fmt: skip
            return False
        self.last_error = None
        loaded = LoadedPolicy(
            policy=policy,
            version=policy_version(policy),
            source=source,
            text=yaml.safe_dump(body, sort_keys=False),
        )
        if self.current is not None and loaded.version == self.current.version:
            return False
        logger.info("policy from the state DB: version %s -> %s (%s)",
                    self.current.version if self.current else "none", loaded.version, source)  # fmt: skip
        self.current = loaded
        if self.on_change is not None:
            outcome = self.on_change(loaded)
            if inspect.isawaitable(outcome):
                await outcome
        return True

    async def run(self) -> None:
        """Poll forever; an unreachable DB is logged (once per distinct error) and polled again."""
        error: str | None = None
        while True:
            try:
                await self.check()
                error = None
            except TemporaryError as exc:
                if str(exc) != error:
                    logger.warning("policy poll failed, keeping %s: %s",
                                   self.current.version if self.current else "none", exc)  # fmt: skip
                error = str(exc)
            await self._sleep(self.interval)


PolicySource = FilePolicySource | DbPolicySource


async def database_source(store: Any) -> DbPolicySource:
    """Follow the operator's applied policy; idle (no targets, dry run) until there is one."""
    source = DbPolicySource(store, interval=5.0)
    await source.check()
    if source.current is None:
        idle = parse_policy(IDLE_POLICY)
        source.current = LoadedPolicy(idle, policy_version(idle), "idle: no EmpireConfig applied yet", "")
        logger.warning("policy source is the database and no EmpireConfig has been applied yet: idle, dry run")
    return source
