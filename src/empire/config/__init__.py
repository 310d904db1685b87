"""Settings: frozen, typed, defaulted; from EMPIRE_* environment variables and an optional file."""

from empire.config.settings import KubernetesSettings, PrometheusSettings, Settings, load_settings
from empire.config.urls import mask_url

__all__ = ["KubernetesSettings", "PrometheusSettings", "Settings", "load_settings", "mask_url"]
