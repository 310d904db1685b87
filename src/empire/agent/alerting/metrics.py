"""Alerting's metric group (`monitor.group(AlertMetrics)`): what fires, what is muted, what was delivered.

Closed label sets only: severities (critical / warning / info), rule and receiver names from the
policy, mute reasons (silenced / inhibited) and delivery results (sent / retried / failed). The
firing gauge is rebuilt from the state DB on every dispatcher pass, so a rule removed from the
policy drops out of it instead of lingering.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RESULTS", "AlertMetrics"]

RESULTS = ("sent", "retried", "failed")


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.firing = Gauge(
            "empire_alerts_firing", "Alerts firing, by severity and rule (muted ones included)",
            ["severity", "rule"], registry=registry,
        )  # fmt: skip
        self.muted = Gauge(
            "empire_alerts_muted", "Alerts left out of notifications, by reason", ["reason"], registry=registry
        )
        self.notifications = Counter(
            "empire_alert_notifications", "Notification delivery attempts by receiver and result",
            ["receiver", "result"], registry=registry,
        )  # fmt: skip
        self.outbox_depth = Gauge(
            "empire_alert_outbox_depth", "Notifications waiting for delivery, by receiver", ["receiver"],
            registry=registry,
        )  # fmt: skip
        self.errors = Counter(
            "empire_alert_task_errors", "Failed passes of the dispatcher / delivery tasks (retried at the next poll)",
            ["task", "error_class"], registry=registry,
        )  # fmt: skip
        self.anomaly_score = Gauge(
            "empire_anomaly_score", "Latest anomaly score (0-1) of each signal an anomaly rule watches",
            ["target", "signal"], registry=registry,
        )  # fmt: skip
        self.delivery_latency = Histogram(
            "empire_alert_delivery_latency_seconds", "From queued to accepted by the receiver",
            buckets=(0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400), registry=registry,
        )  # fmt: skip

    def set_firing(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.firing.clear()
        for (severity, rule), n in counts.items():
            self.firing.labels(severity, rule).set(n)

    def set_anomaly_scores(self, scores: Mapping[tuple[str, str], float]) -> None:
        """Only the signals watched now (policy names: a closed set); a dropped rule drops its series."""
        self.anomaly_score.clear()
        for (target, signal), score in scores.items():
            self.anomaly_score.labels(target, signal).set(score)

    def set_muted(self, counts: Mapping[str, int]) -> None:
        for reason in ("silenced", "inhibited"):
            self.muted.labels(reason).set(counts.get(reason, 0))

    def set_outbox(self, depth: Mapping[str, int], receivers: list[str]) -> None:
        self.outbox_depth.clear()
        for name in sorted(set(receivers) | set(depth)):
            self.outbox_depth.labels(name).set(depth.get(name, 0))
