"""Horizon forecasts: demand `predictive.horizon` (and each predicted_breach rule's horizon) ahead.

`path.py` is the pure half (which keys, which step, resampling, guarded fits, the path); `service.py`
the I/O half (`HorizonForecasts`: history, worker-thread refits, model registry, metrics, `/status`).
"""

from empire.agent.horizon.path import (
    BASE_QUANTILES,
    HorizonPath,
    HorizonSpec,
    LeadFit,
    PathPoint,
    bucket_means,
    build_path,
    fit_leads,
    grid_step,
    horizon_specs,
)
from empire.agent.horizon.service import HorizonForecasts, history_query

__all__ = [
    "BASE_QUANTILES",
    "HorizonForecasts",
    "HorizonPath",
    "HorizonSpec",
    "LeadFit",
    "PathPoint",
    "bucket_means",
    "build_path",
    "fit_leads",
    "grid_step",
    "history_query",
    "horizon_specs",
]
