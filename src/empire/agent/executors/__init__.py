"""Executors: the Kubernetes scale subresource over httpx, and a dry-run pretend cluster."""
