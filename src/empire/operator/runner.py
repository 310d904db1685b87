"""Run the operator: kopf, programmatically, with peering chosen for several replicas.

Why kopf peering (and not the agent's leader election in `empire.agent.leader`): peering pauses
kopf's *watch streams* in every replica but one, so a paused replica neither handles events nor
writes status or Events; a DB lock checked inside the handlers would still let every replica's
kopf machinery write its progress annotations and retry. Peering needs nothing beyond the
Kubernetes API the operator already talks to (a namespaced `KopfPeering` object,
`deploy/base/peering.yaml`, its CRD in `deploy/crds/kopf-peering`).

kopf pauses *every* operator that sees a live peer with the same priority, so replicas must not
share one: unless `--priority` is given, each process draws a random one. The replica with the
highest priority is the active one; when it exits it removes itself, and when it dies the others
resume once its keep-alive expires (60 s). `--standalone` turns peering off (one replica, tests).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Sequence

from empire.operator.handlers import OperatorConfig, build_registry

__all__ = ["DEFAULT_PEERING", "random_priority", "run_operator"]

logger = logging.getLogger(__name__)
DEFAULT_PEERING = "empire"


def random_priority() -> int:
    """A priority unlikely to collide with another replica's (kopf pauses equal priorities)."""
    return 1 + secrets.randbelow(2**31 - 2)


def run_operator(
    config: OperatorConfig,
    *,
    namespaces: Sequence[str] = (),
    clusterwide: bool = False,
    standalone: bool = False,
    peering_name: str = DEFAULT_PEERING,
    priority: int | None = None,
    liveness_endpoint: str | None = None,
) -> None:
    """Block running the operator until SIGINT/SIGTERM."""
    import kopf

    if not namespaces and not clusterwide:
        namespaces = (os.environ.get("POD_NAMESPACE") or "default",)
    if not standalone and priority is None:
        priority = random_priority()
    logger.warning(
        "empire operator: namespaces=%s, %s",
        "all" if clusterwide else ",".join(namespaces),
        "standalone" if standalone else f"peering {peering_name!r} with priority {priority}",
    )
    kopf.run(
        registry=build_registry(config),
        standalone=standalone,
        peering_name=None if standalone else peering_name,
        priority=priority,
        namespaces=tuple(namespaces),
        clusterwide=clusterwide,
        liveness_endpoint=liveness_endpoint,
    )
