"""The operator's own metrics, on its own port (`empire operator run --metrics-port 9465`).

Why separate from the agent's `/metrics`: the operator is another process (another container of
the pod, or another Deployment), and what an operator user watches is different: are
EmpireConfigs reconciled, how long does it take, are specs being refused, and when did the last
reconcile succeed (an alert on its age catches a wedged operator, as `controller_runtime_*` and
kopf users do). Label values are closed sets: handler ids and fixed result names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RESULTS", "OperatorMetrics", "serve_metrics"]

RESULTS = ("applied", "unchanged", "invalid", "inactive", "unavailable", "error", "ok", "takeover")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reconciles = Counter(
            "empire_operator_reconciles", "EmpireConfig handler runs by handler (apply, agent-status, withdraw) "
            "and result (applied, unchanged, invalid, inactive, unavailable, error, ok, takeover)",
            ["handler", "result"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "empire_operator_reconcile_duration_seconds", "Wall time of one handler run (validation, state DB "
            "hand-off, status)", ["handler"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self.invalid_specs = Gauge(
            "empire_operator_invalid_specs",
            "EmpireConfigs whose latest generation the operator refused (Ready=False InvalidSpec); the last good "
            "policy stays in force",
            registry=registry,
        )
        self.last_success = Gauge(
            "empire_operator_last_successful_reconcile_timestamp_seconds",
            "When a handler last finished without error (unix time)",
            registry=registry,
        )
        self._invalid: set[tuple[str, str]] = set()

    def spec_invalid(self, key: tuple[str, str], invalid: bool) -> None:
        """Track whether the EmpireConfig `key` (namespace, name) currently has an invalid spec."""
        (self._invalid.add if invalid else self._invalid.discard)(key)
        self.invalid_specs.set(len(self._invalid))


def serve_metrics(port: int, address: str, registry: CollectorRegistry) -> None:
    """Serve `registry` on http://address:port/metrics in a daemon thread (prometheus-client's server)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=address, registry=registry)
