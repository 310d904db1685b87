"""`StateHealth`: is the daemon's state database usable right now, and if not, why.

Why the daemon needs this: every action is journaled as an intent before it touches the world,
so a database that cannot be written (deleted, read-only, full, corrupt, unreachable) means the
agent must stop acting, say so where operators look (`/readyz`, `/status`, a metric and its
alert), and pick up again by itself when the condition clears. Without it each caller met the
failure on its own, every tick and every retry: 28 log lines a second, and a daemon still "ready".

How it decides:

* **down** at the first classified failure of any operation (`Database` calls `failed()` with the
  `StateUnavailable`/`StateBroken` before the caller sees it; the error is marked `reported`, so
  the caller logs it at DEBUG). A different reason while down is a new state (one more line).
* **up** again only after two probes in a row (`check()`, once per loop tick) with no failure
  between them: the probe is a real committed write (`Database.probe`) that cannot tell "the disk
  has room for this row" from "for every row", so the loop's own writes in the interval must pass
  too. A condition that clears by itself (a full disk, a restarted server, a chmod) recovers
  within two ticks; one that cannot clear while the process runs (`failures.STICKY`: a corrupt or
  replaced file) stays down until a restart, and its message says so.

One log line per change of state, never per tick: ERROR when it goes down (with the reason, the
driver's message and what is held), INFO when it comes back (with how long it was down).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from empire.errors import STICKY, DbFailure, EmpireError, StateDbError

if TYPE_CHECKING:
    from empire.state.database import Database

__all__ = ["StateHealth"]

logger = logging.getLogger(__name__)

CLEAN_PROBES = 2


class StateHealth:
    """Up/down state of `db` with its reason; attaches itself as `db.health`.

    `now` is the daemon's clock (for `since`); `on_change(self)` is called on every change of
    state (the daemon updates its metrics there)."""

    def __init__(
        self, db: Database, now: Callable[[], datetime], on_change: Callable[[StateHealth], None] | None = None
    ) -> None:
        self.db = db
        self.now = now
        self.on_change = on_change
        self.up = True
        self.reason: DbFailure | None = None
        self.message: str | None = None
        self.error: StateDbError | None = None  # the failure that took it down (or its latest reason)
        self.since: datetime = now()
        self.failures = 0  # operations that failed since it went down
        self._clean = 0  # probes passed in a row with no failure between them
        db.health = self

    def failed(self, err: StateDbError) -> None:
        """A database operation failed with `err` (called by `Database` for every classified failure)."""
        err.reported = True
        self._clean = 0
        self.failures += 1
        if not self.up and (err.reason == self.reason or self.reason in STICKY):
            return
        was_up = self.up
        self.up, self.reason, self.message, self.error, self.since = False, err.reason, str(err), err, self.now()
        self.failures = 1
        if was_up:
            logger.error("state database down (%s): %s; no action is taken until it recovers (decisions are "
                         "still computed and logged)", err.reason.value, err)  # fmt: skip
        else:
            logger.error("state database still down, now %s: %s", err.reason.value, err)
        self._changed()

    async def check(self) -> bool:
        """Probe the database once (the loop calls this at the start of every tick); True when up."""
        try:
            await self.db.probe()
        except StateDbError:
            return self.up  # `failed()` has been told by `Database`
        except EmpireError as exc:  # not a database failure (a bug in the probe): say so, keep the state
            logger.debug("state database probe: %s", exc)
            return self.up
        if self.up or self.reason in STICKY:
            return self.up
        self._clean += 1
        if self._clean >= CLEAN_PROBES:
            down_for = (self.now() - self.since).total_seconds()
            logger.info("state database available again after %.0fs down (%s, %d failed operations); actions "
                        "resume", down_for, self.reason.value if self.reason else "?", self.failures)  # fmt: skip
            self.up, self.reason, self.message, self.error, self.since = True, None, None, None, self.now()
            self.failures = 0
            self._changed()
        return self.up

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    def problem(self) -> str | None:
        """Why the daemon is not ready, or None (the `/readyz` check)."""
        return None if self.up else f"state database {self.reason.value if self.reason else 'down'}: {self.message}"

    def snapshot(self) -> dict[str, Any]:
        """The `/status` section."""
        return {
            "up": self.up, "reason": self.reason.value if self.reason else None, "message": self.message,
            "since": self.since.isoformat(), "failed_operations": self.failures, "actions_held": not self.up,
            "database": self.db.describe(),
        }  # fmt: skip
