"""Metric sources: Prometheus over its HTTP API, a recorded trace replayed against the loop's clock,
and `NoSource` for a daemon started without one (it reports the source unavailable, so the
fallback rules apply instead of anything being scaled on no data)."""
