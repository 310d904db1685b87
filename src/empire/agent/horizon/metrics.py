"""`HorizonMetrics` (`monitor.group(HorizonMetrics)`): the horizon forecasts' gauges and refit counter.

Apart from `PredictiveMetrics` so the horizon service does not import the predictive area that uses it.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["HorizonMetrics"]


class HorizonMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        # The horizon forecast (empire.agent.horizon): label values come from the policy (targets, signals,
        # its horizons) and the fixed quantiles p10/p50/p90 plus the policy's, so the sets are closed.
        self.horizon_demand = Gauge(
            "empire_forecast_horizon_demand",
            "Demand forecast `horizon` after the last complete step, per quantile (what predicted_breach rules read)",
            ["target", "signal", "forecast_quantile", "horizon"], registry=registry,
        )  # fmt: skip
        self.horizon_mae = Gauge(
            "empire_forecast_horizon_validation_mae",
            "Holdout MAE of the horizon model (gbm) and of its seasonal fallback; the model is used only if not worse",
            ["target", "signal", "horizon", "model"], registry=registry,
        )  # fmt: skip
        self.horizon_refits = Counter(
            "empire_forecast_horizon_refits", "Horizon model refits by result (model|fallback|short_history|error)",
            ["target", "signal", "result"], registry=registry,
        )  # fmt: skip
