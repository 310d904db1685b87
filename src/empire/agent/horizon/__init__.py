"""Horizon forecasts: demand `predictive.horizon` (and each predicted_breach rule's horizon) ahead.

`path.py` is the pure half (which keys, which step, resampling, guarded fits, the path); `service.py`
the I/O half (`HorizonForecasts`: history, worker-thread refits, model registry, metrics, `/status`).
"""
