"""Repeated log lines, rate-limited: one line plus a count per interval, for every logger.

Why: a failure that repeats logs on every repetition. Under a flood of connections the event
loop's "socket.accept() out of system resource" (with its traceback) and uvicorn's per-request
warnings wrote 237 MB in 30 s, filling the disk that the state database lives on. A failure
repeated ten thousand times says nothing the first line and a count do not.

`RepeatFilter` sits on the root handlers (`install`, called once where the CLI configures
logging), so it sees every logger's records, uvicorn's and asyncio's included (the HTTP server is
started without a logging config of its own, so its loggers propagate to the root). Records are
keyed by logger, level and message *template* (`record.msg`, not the formatted text; digits in it
count as one, so a pre-formatted message with a changing port or address is still one key). Per
key and interval, the first record passes; the others are counted, and the next record after the
interval is written once, annotated "(repeated 1,234 times in the last 60s)". When a flood stops,
its count is written by the next record logged by anyone (a sweep at most once a second), or at
exit, so no count is lost.

Only WARNING and above are limited: those are what a failure repeats. INFO is the agent's
narrative, one line per decision or action, bounded by the work done (the same template for
every target), and limiting it would drop decisions from the log.

`log_unless_reported` is the other half for the state database: its failures are logged once per
change of state by `empire.state.health.StateHealth`, so where such an error surfaces (every
tick, every retry) it is logged at DEBUG.
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from empire.errors import StateDbError

__all__ = ["RepeatFilter", "already_reported", "install", "log_unless_reported"]

_DIGITS = re.compile(r"\d+")
_SUMMARY = "_empire_repeat_summary"


@dataclass
class _Window:
    start: float
    suppressed: int = 0
    last: logging.LogRecord | None = None
    last_at: float = 0.0


class RepeatFilter(logging.Filter):
    """A handler filter: per (logger, level, template), one record per `interval` seconds.

    `emit` writes the annotated records (the handler's `handle`); `clock` is for tests."""

    def __init__(
        self,
        emit: Callable[[logging.LogRecord], object],
        *,
        interval: float = 60.0,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        super().__init__()
        self.emit, self.interval, self.level, self.clock, self.max_keys = emit, interval, level, clock, max_keys
        self._windows: dict[tuple[str, int, str], _Window] = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _SUMMARY, False):
            return True
        now = self.clock()
        with self._lock:
            verdict = self._admit(record, now) if record.levelno >= self.level else True
            due = self._sweep(now) if now >= self._next_sweep else []
        for summary in due:
            self.emit(summary)
        if isinstance(verdict, logging.LogRecord):
            self.emit(verdict)
            return False
        return verdict

    def _admit(self, record: logging.LogRecord, now: float) -> bool | logging.LogRecord:
        """True: write the record; False: count it; a record: write that instead (annotated)."""
        key = (record.name, record.levelno, _DIGITS.sub("#", str(record.msg))[:200])
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) < self.max_keys:
                self._windows[key] = _Window(now)
            return True
        if now - window.start < self.interval:
            window.suppressed += 1
            window.last, window.last_at = record, now
            return False
        self._windows[key] = _Window(now)
        if window.suppressed == 0:
            return True
        return _annotated(record, window.suppressed + 1, now - window.start)

    def write_counts(self) -> None:
        """Write the count of every window that suppressed lines (at exit: no count is lost)."""
        with self._lock:
            due = [_annotated(w.last, w.suppressed, w.last_at - w.start) for w in self._windows.values()
                   if w.suppressed and w.last is not None]  # fmt: skip
            self._windows.clear()
        for summary in due:
            self.emit(summary)

    def _sweep(self, now: float) -> list[logging.LogRecord]:
        """Forget windows that ended; the counts of those that suppressed lines, as records."""
        self._next_sweep = now + 1.0
        due: list[logging.LogRecord] = []
        for key, window in list(self._windows.items()):
            if now - window.start < self.interval:
                continue
            del self._windows[key]
            if window.suppressed and window.last is not None:
                due.append(_annotated(window.last, window.suppressed, window.last_at - window.start))
        return due


def _annotated(record: logging.LogRecord, count: int, seconds: float) -> logging.LogRecord:
    """A copy of `record` saying how often it came; without its traceback (the first line had one)."""
    text = f"{record.getMessage()} (repeated {count:,} time{'' if count == 1 else 's'} in the last {max(1, round(seconds))}s)"
    fields = {**record.__dict__, "msg": text, "args": None, "exc_info": None, "exc_text": None, _SUMMARY: True}
    return logging.makeLogRecord(fields)


def install(
    handlers: list[logging.Handler] | None = None,
    *,
    interval: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Put a `RepeatFilter` on each of `handlers` (default: the root logger's) that has none yet;
    the counts still pending are written at exit."""
    for handler in logging.getLogger().handlers if handlers is None else handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            repeat = RepeatFilter(handler.handle, interval=interval, clock=clock)
            handler.addFilter(repeat)
            atexit.register(repeat.write_counts)


def already_reported(exc: BaseException) -> bool:
    """True for a state DB failure the health monitor has logged already (log it at DEBUG)."""
    return isinstance(exc, StateDbError) and exc.reported


def log_unless_reported(
    log: logging.Logger,
    exc: BaseException,
    msg: str,
    *args: object,
    level: int = logging.WARNING,
    traceback: bool = False,
) -> None:
    """Log `msg % args` at `level` (with the traceback when asked), or at DEBUG without one when
    `exc` is a state DB failure `StateHealth` has reported already: its one line per change of
    state says it, not every caller on every retry."""
    if already_reported(exc):
        log.debug(msg, *args, stacklevel=2)
    else:
        log.log(level, msg, *args, exc_info=exc if traceback else None, stacklevel=2)
