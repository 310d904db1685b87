"""kopf handlers for EmpireConfig: thin adapters around `spec`, `status` and `handoff`.

- **create / update / resume** (`reconcile`): is this EmpireConfig the one in force (oldest wins,
  `spec.choose_active` over a kopf index of all EmpireConfigs)? Validate the spec (`parse_spec`);
  if valid, write it to the state DB as the applied policy version (`handoff.apply_policy`, a no-op
  when that version is already in force); patch the status (`status.*`) and post an Event for each
  applied change or condition transition. An invalid spec sets `Ready=False` with the field paths
  and writes nothing, so the agent keeps the last good policy.
- **timer** (`refresh`, every `status_interval`): copy the agent's latest decision per target from
  the state DB into `status.targets` and recompute `Degraded`; take over when the EmpireConfig in
  force was deleted and this one is next.
- **delete** (`withdraw`, behind the finalizer `empire.io/policy`): if this EmpireConfig was in
  force, hand over to the next one, or apply the idle policy (`spec.IDLE_POLICY`) so the agent
  stops acting. A DB outage keeps the finalizer and retries, so a deletion is never lost.

Settings made at startup, and why: cluster scanning is off (the operator watches exact namespaces
and knows its one resource, so it needs no cluster-wide list/watch of namespaces or CRDs, hence no
ClusterRole); kopf's progress and diff-base go into `empire.io/*` annotations (the status stays
ours); only warnings and errors from logs become Events (our own Events are posted explicitly).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from prometheus_client import CollectorRegistry

from empire.agent.clock import SystemClock
from empire.errors import TemporaryError
from empire.operator.crd import GROUP, PLURAL, VERSION
from empire.operator.handoff import apply_policy, withdraw_policy
from empire.operator.metrics import OperatorMetrics
from empire.operator.spec import Candidate, ConfigRef, choose_active, parse_spec, plain
from empire.operator.status import (
    agent_status,
    applied_status,
    events_between,
    inactive_status,
    invalid_status,
    unavailable_status,
)
from empire.policies.errors import PolicyError
from empire.policies.schema import parse_policy

__all__ = ["FINALIZER", "OperatorConfig", "build_registry"]

logger = logging.getLogger(__name__)
FINALIZER = "empire.io/policy"
INDEX = "empireconfigs_index"


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator needs besides kopf's own flags."""

    database_url: str
    status_interval: float = 30.0
    server: str | None = None  # an explicit API server URL (no TLS verification): tests, `kubectl proxy`
    clock: Any = field(default_factory=SystemClock)
    retry_delay: float = 10.0  # seconds before kopf retries after a state DB outage
    registry: Any = None  # a prometheus CollectorRegistry for the operator's metrics (default: a private one)


class _Operator:
    def __init__(self, config: OperatorConfig) -> None:
        self.config = config
        self.clock = config.clock
        self.db: Any = None
        self.store: Any = None
        registry = config.registry if config.registry is not None else CollectorRegistry(auto_describe=True)
        self.metrics = OperatorMetrics(registry)

    def measured(self, handler: str, fn: Any) -> Any:
        """`fn` (a handler) with its duration and result counted; the result is what it returned
        (a result name), `unavailable` for a retried DB outage, `error` for anything else."""
        metrics = self.metrics

        @functools.wraps(fn)
        async def run(**kwargs: Any) -> None:
            started = time.perf_counter()
            try:
                result = await fn(**kwargs) or "ok"
            except kopf.TemporaryError:
                metrics.reconciles.labels(handler, "unavailable").inc()
                raise
            except Exception:
                metrics.reconciles.labels(handler, "error").inc()
                raise
            finally:
                metrics.duration.labels(handler).observe(time.perf_counter() - started)
            metrics.reconciles.labels(handler, result).inc()
            metrics.last_success.set(time.time())

        return run

    # -- activities ---------------------------------------------------------------------------

    async def startup(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.scanning.disabled = True
        settings.posting.level = logging.WARNING
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="empire.io")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="empire.io")
        # A deletion waits for the status timer to stop; it stops within one DB read, so check often
        # (kopf's default re-checks once a minute, which would hold the finalizer that long).
        settings.background.instant_exit_timeout = 0.5
        settings.background.cancellation_polling = 1.0
        from empire.state.database import Database
        from empire.state.store import SqlStateStore

        try:
            self.db = await Database.open(self.config.database_url)
        except TemporaryError as exc:
            raise kopf.TemporaryError(str(exc), delay=exc.delay or self.config.retry_delay) from None
        self.store = SqlStateStore(self.db)

    async def cleanup(self, **_: Any) -> None:
        if self.db is not None:
            await self.db.close()

    def login(self, settings: kopf.OperatorSettings, **kwargs: Any) -> kopf.ConnectionInfo | None:
        if self.config.server:
            return kopf.ConnectionInfo(server=self.config.server, insecure=True)
        return kopf.login_with_service_account(settings=settings, **kwargs) or kopf.login_with_kubeconfig(
            settings=settings, **kwargs
        )

    # -- the index of all EmpireConfigs (for "which one is in force") -----------------------------

    @staticmethod
    def index(body: kopf.Body, **_: Any) -> dict[str, Candidate]:
        return {"all": Candidate.from_body(body)}

    @staticmethod
    def _candidates(body: Mapping[str, Any], index: Any, deleting: bool | None = None) -> list[Candidate]:
        own = Candidate.from_body(body)
        if deleting is not None:
            own = dataclasses.replace(own, deleting=deleting)
        values: Iterable[Candidate] = index.get("all", []) if index is not None else []
        return [c for c in values if c.key != own.key] + [own]

    # -- handlers -------------------------------------------------------------------------------

    async def reconcile(self, body: kopf.Body, status: kopf.Status, patch: kopf.Patch, **kwargs: Any) -> str:
        ref = ConfigRef.from_body(body)
        now = self.clock.now()
        previous = plain(status)
        active = choose_active(self._candidates(body, kwargs.get(INDEX)))
        if active is None or active.key != ref.key:
            self._write(body, patch, previous, inactive_status(ref, active, previous, now), "observedGeneration")
            self.metrics.spec_invalid(ref.key, False)
            return "inactive"
        result = parse_spec(body.get("spec"), ref)
        self.metrics.spec_invalid(ref.key, not result.ok)
        if not result.ok:
            logger.warning("%s generation %s is invalid, keeping the policy in force:\n%s", ref.describe(),
                           ref.generation, "\n".join(result.issue_lines()))  # fmt: skip
            self._write(body, patch, previous, invalid_status(result, previous, now), "observedGeneration")
            return "invalid"
        try:
            applied = await apply_policy(self.store, result, now)
            new = applied_status(result, previous, now, applied.changed)
            assert result.policy is not None
            new |= agent_status(result.policy, await self._latest(result.policy), {**previous, **new}, now,
                                ref.generation)  # fmt: skip
        except TemporaryError as exc:
            self._write(body, patch, previous, unavailable_status(ref, str(exc), previous, now), "observedGeneration")
            raise kopf.TemporaryError(str(exc), delay=exc.delay or self.config.retry_delay) from None
        self._write(body, patch, previous, new, "observedGeneration")
        if applied.changed:
            pol = result.policy
            kopf.event(body, type="Normal", reason="PolicyApplied", message=(
                f"policy version {applied.version} (generation {ref.generation}) is in force: "
                f"{len(pol.targets)} targets, {len(pol.providers)} providers, {len(pol.personas)} personas; "
                f"previous version {applied.previous or 'none'}"))  # fmt: skip
        return "applied" if applied.changed else "unchanged"

    async def refresh(self, body: kopf.Body, status: kopf.Status, patch: kopf.Patch, **kwargs: Any) -> str | None:
        ref = ConfigRef.from_body(body)
        now = self.clock.now()
        previous = plain(status)
        ready = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), None)
        active = choose_active(self._candidates(body, kwargs.get(INDEX)))
        if active is None or active.key != ref.key:
            if ready is None or ready.get("reason") != "NotActive":
                self._write(body, patch, previous, inactive_status(ref, active, previous, now), "observedGeneration")
            return "inactive"
        if ready is None or ready.get("reason") in ("NotActive", "StateUnavailable"):
            await self.reconcile(body=body, status=status, patch=patch, **kwargs)  # take over
            return "takeover"
        try:
            row = await self.store.latest_policy_version()
            if row is None:
                return
            try:
                policy = parse_policy(row["body"])
            except PolicyError:
                return
            new = agent_status(policy, await self._latest(policy), previous, now, ref.generation)
        except TemporaryError as exc:
            logger.warning("%s: cannot read the agent's decisions: %s", ref.describe(), exc)
            return "unavailable"
        self._write(body, patch, previous, new, "agentPolicyVersion")
        return "ok"

    async def withdraw(self, body: kopf.Body, **kwargs: Any) -> None:
        ref = ConfigRef.from_body(body)
        self.metrics.spec_invalid(ref.key, False)
        now = self.clock.now()
        index = kwargs.get(INDEX)
        was = choose_active(self._candidates(body, index, deleting=False))
        successor_c = choose_active(self._candidates(body, index, deleting=True))
        successor = parse_spec(successor_c.spec_dict(), successor_c.ref) if successor_c else None
        was_in_force = was is not None and was.key == ref.key
        try:
            outcome = await withdraw_policy(self.store, ref, was_in_force, successor, now)
        except TemporaryError as exc:
            raise kopf.TemporaryError(str(exc), delay=exc.delay or self.config.retry_delay) from None
        if not was_in_force:
            message = "this EmpireConfig was not in force: the policy is unchanged"
        elif successor is not None and successor.ok:
            message = f"{successor.ref.describe()} takes over with policy version {outcome.version}"
        elif successor is not None:
            message = (f"{successor.ref.describe()} is next but its spec is invalid: the agent idles "
                       f"(policy version {outcome.version}: dry run, no targets)")  # fmt: skip
        else:
            message = f"no EmpireConfig left: the agent idles (policy version {outcome.version}: dry run, no targets)"
        kopf.event(body, type="Normal", reason="PolicyWithdrawn", message=message)

    # -- helpers --------------------------------------------------------------------------------

    async def _latest(self, policy: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in policy.targets:
            rows = await self.store.recent_decisions(target=t.name, limit=1)
            out[t.name] = rows[0] if rows else None
        return out

    @staticmethod
    def _write(
        body: kopf.Body, patch: kopf.Patch, previous: Mapping[str, Any], new: Mapping[str, Any], anchor: str
    ) -> None:
        """Patch only the status fields that change; post an Event per condition transition.

        Conditions are written per type onto the *fresh* object (a kopf patch function), not as a
        whole list from this handler's view: the timer and the change handlers run concurrently,
        and a list merge-patched from a stale view would undo the other's condition. `anchor`
        (a field this writer owns) is always merge-patched along, so kopf computes the condition
        changes against the server's answer to it.
        """
        changed = {c["type"]: c for c in new.get("conditions") or [] if c not in (previous.get("conditions") or [])}
        for key, value in new.items():
            if key != "conditions" and previous.get(key) != value:
                patch.status[key] = value
        if changed:
            if anchor not in patch.status:
                patch.status[anchor] = new.get(anchor, previous.get(anchor))
            patch.fns.append(functools.partial(_set_conditions, changed=changed))
        for kind, reason, message in events_between(previous, new.get("conditions") or []):
            kopf.event(body, type=kind, reason=reason, message=message)


def _set_conditions(body: dict[str, Any], changed: Mapping[str, dict[str, Any]]) -> None:
    """Replace (or add) the conditions of the `changed` types in `body`, keeping the others."""
    status = body.setdefault("status", {})
    current = [c for c in status.get("conditions") or [] if c.get("type") not in changed]
    merged = {c["type"]: c for c in current} | dict(changed)
    order = ("Ready", "Degraded", "Paused")
    status["conditions"] = [merged.pop(t) for t in order if t in merged] + sorted(
        merged.values(), key=lambda c: c["type"]
    )


def build_registry(config: OperatorConfig) -> kopf.OperatorRegistry:
    """A kopf registry with every EmpireConfig handler bound to `config` (no module-level state)."""
    op = _Operator(config)
    reg = kopf.OperatorRegistry()
    res = (GROUP, VERSION, PLURAL)
    kopf.on.startup(registry=reg)(op.startup)
    kopf.on.cleanup(registry=reg)(op.cleanup)
    kopf.on.login(registry=reg)(op.login)
    kopf.index(*res, registry=reg, id=INDEX)(op.index)
    for on in (kopf.on.create, kopf.on.update, kopf.on.resume):
        on(*res, registry=reg, id="apply", backoff=config.retry_delay)(op.measured("apply", op.reconcile))
    kopf.on.delete(*res, registry=reg, id="withdraw", backoff=config.retry_delay)(op.measured("withdraw", op.withdraw))
    kopf.timer(*res, registry=reg, id="agent-status", interval=config.status_interval,
               initial_delay=min(config.status_interval, 5.0))(op.measured("agent-status", op.refresh))  # fmt: skip
    return reg
