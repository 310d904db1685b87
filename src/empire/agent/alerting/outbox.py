"""Delivering the outbox: every queued notification reaches its receiver, in order, at least once.

Why an outbox: the dispatcher decides *what* to tell whom inside the control loop's process, but
receivers fail (Slack rate-limits, the SMTP relay is down, Alertmanager restarts). The decision is
therefore written to the `notifications` table first; this task sends it, and only the receiver's
acceptance marks it `sent`. Nothing is lost while a receiver is down or the daemon restarts.

* Per receiver, notifications go out in the order they were queued; a failing one holds the ones
  behind it (a "resolved" never overtakes its "firing"). Receivers are served concurrently, so a
  slow one never delays another, and the delivery task never blocks the control loop.
* A temporary failure is retried with exponential backoff (`base * 2^(n-1)`, capped), or after
  the receiver's `Retry-After`. After `give_up_after` (default 24 h) the notification is marked
  `failed`: an alert a day late is noise, and the alert itself is still on the dashboard.
* A permanent failure (rejected payload, revoked webhook, unknown recipient, missing secret)
  is marked `failed` at once, logged, and counted.
* Delivery is at least once: an attempt in flight at shutdown is finished and recorded (shielded
  from cancellation, bounded by the send timeout), but a crash after the receiver accepted and
  before `sent` was written resends it. Alertmanager deduplicates by labels; chat and email may
  show a rare duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from empire.agent.alerting.metrics import AlertMetrics
from empire.agent.alerting.ports import AlertSink
from empire.agent.alerting.store import AlertStore, OutboxItem
from empire.agent.ports import Clock
from empire.errors import PermanentError, TemporaryError

__all__ = ["Backoff", "DeliveryReport", "Outbox"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    base: float = 2.0  # seconds before the first retry
    cap: float = 600.0  # longest wait between attempts
    max_retry_after: float = 3600.0  # a receiver's Retry-After is honoured up to this
    give_up_after: timedelta = timedelta(hours=24)

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.cap, self.base * 2 ** max(0, attempts - 1))


@dataclass
class DeliveryReport:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    next_attempt_at: datetime | None = None  # the earliest retry now waiting
    errors: list[str] = field(default_factory=list)

    def wait_for(self, at: datetime) -> None:
        if self.next_attempt_at is None or at < self.next_attempt_at:
            self.next_attempt_at = at


class Outbox:
    def __init__(self, store: AlertStore, receivers: Mapping[str, AlertSink], clock: Clock, metrics: AlertMetrics,
                 backoff: Backoff | None = None, timeout: float = 30.0) -> None:  # fmt: skip
        self.store = store
        self.receivers = receivers
        self.clock = clock
        self.metrics = metrics
        self.backoff = backoff or Backoff()
        self.timeout = timeout

    async def deliver_once(self) -> DeliveryReport:
        """Try every due notification once (receivers concurrently, each in queue order)."""
        report = DeliveryReport()
        queues: dict[str, list[OutboxItem]] = {}
        for item in await self.store.pending():
            queues.setdefault(item.receiver, []).append(item)
        async with anyio.create_task_group() as tg:
            for receiver, queue in queues.items():
                tg.start_soon(self._drain, receiver, queue, report)
        return report

    async def _drain(self, receiver: str, queue: list[OutboxItem], report: DeliveryReport) -> None:
        for item in queue:
            now = self.clock.now()
            if item.next_attempt_at > now:
                report.wait_for(item.next_attempt_at)
                return  # keep the queue order: nothing behind it goes first
            with anyio.CancelScope(shield=True):  # finish and record an attempt even on shutdown
                go_on = await self._attempt(receiver, item, now, report)
            if not go_on:
                return

    async def _attempt(self, receiver: str, item: OutboxItem, now: datetime, report: DeliveryReport) -> bool:
        """One delivery attempt; True when the next notification of this receiver may go."""
        attempts = item.attempts + 1
        sink = self.receivers.get(receiver)
        if sink is None:
            await self._fail(item, attempts, f"receiver {receiver!r} is not in the policy any more", report)
            return True
        try:
            with anyio.fail_after(self.timeout):
                await sink.send(item.notification)
        except PermanentError as exc:
            await self._fail(item, attempts, str(exc), report)
            return True
        except (TemporaryError, TimeoutError) as exc:
            delay = exc.delay if isinstance(exc, TemporaryError) else None
            message = str(exc) if isinstance(exc, TemporaryError) else f"receiver {receiver}: timed out"
            await self._retry(item, attempts, now, message, delay, report)
            return False
        except Exception as exc:  # a bug in a receiver: keep the notification; the message may hold a URL
            logger.error("receiver %s raised unexpectedly: %s", receiver, type(exc).__name__)
            logger.debug("receiver %s traceback", receiver, exc_info=True)
            await self._retry(item, attempts, now, f"internal error: {type(exc).__name__}", None, report)
            return False
        done = self.clock.now()
        await self.store.mark_sent(item.id, attempts, done)
        self.metrics.notifications.labels(receiver, "sent").inc()
        self.metrics.delivery_latency.observe(max(0.0, (done - item.created_at).total_seconds()))
        report.sent += 1
        logger.info("notification %s to %s delivered (attempt %s): %s", item.id, receiver, attempts,
                    item.payload.get("status"))  # fmt: skip
        return True

    async def _retry(self, item: OutboxItem, attempts: int, now: datetime, error: str, retry_after: float | None,
                     report: DeliveryReport) -> None:  # fmt: skip
        if now - item.created_at >= self.backoff.give_up_after:
            await self._fail(item, attempts, f"gave up after {attempts} attempts: {error}", report)
            return
        nxt = now + timedelta(seconds=self.backoff.delay(attempts, retry_after))
        await self.store.mark_retry(item.id, attempts, nxt, error)
        self.metrics.notifications.labels(item.receiver, "retried").inc()
        report.retried += 1
        report.wait_for(nxt)
        report.errors.append(error)
        logger.warning("notification %s to %s not delivered (attempt %s), retry at %s: %s", item.id, item.receiver,
                       attempts, nxt.isoformat(timespec="seconds"), error)  # fmt: skip

    async def _fail(self, item: OutboxItem, attempts: int, error: str, report: DeliveryReport) -> None:
        await self.store.mark_failed(item.id, attempts, error)
        self.metrics.notifications.labels(item.receiver, "failed").inc()
        report.failed += 1
        report.errors.append(error)
        logger.error("notification %s to %s failed for good: %s", item.id, item.receiver, error)
