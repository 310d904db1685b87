"""Executors: the Kubernetes scale subresource over httpx, and a dry-run pretend cluster."""

from empire.agent.executors.dryrun import DryRunExecutor
from empire.agent.executors.kubeconfig import ClusterConfig, load_cluster_config
from empire.agent.executors.kubernetes import KubernetesScaler

__all__ = ["ClusterConfig", "DryRunExecutor", "KubernetesScaler", "load_cluster_config"]
