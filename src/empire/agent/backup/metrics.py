"""Backup metrics (`monitor.group(BackupMetrics)`): per class, when the last backup succeeded, how big and slow it
was, how many are kept, whether one is overdue, and every attempt's result. `class` is one of
hourly, daily, monthly; `result` an `OutcomeStatus` value."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["BackupMetrics"]


class BackupMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["class"]
        self.last_success = Gauge("empire_backup_last_success_timestamp_seconds",
                                  "when the newest backup of the class was taken (Unix time)", labels,
                                  registry=registry)  # fmt: skip
        self.size = Gauge("empire_backup_size_bytes", "size of the newest backup of the class", labels,
                          registry=registry)  # fmt: skip
        self.duration = Gauge("empire_backup_duration_seconds", "time the last successful backup took to take",
                              labels, registry=registry)  # fmt: skip
        self.kept = Gauge("empire_backups", "backups of the class kept (not yet expired)", labels, registry=registry)
        self.overdue = Gauge("empire_backup_overdue", "1 while the class's current slot is overdue", labels,
                             registry=registry)  # fmt: skip
        self.runs = Counter("empire_backup_runs", "backup attempts by class and result", ["class", "result"],
                            registry=registry)  # fmt: skip
