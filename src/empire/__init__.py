"""empire: an autonomous controller daemon for a generative-content operation.

It observes metrics, forecasts demand, detects anomalies and acts: scales Kubernetes workloads,
submits generation jobs through pools of rate-limited API accounts, moves content between storage
tiers and routes alerts. Every action is journaled with its reason.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("empire")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
