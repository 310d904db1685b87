"""The policy: everything an operator edits in YAML, and the `spec` of the EmpireConfig resource.

`parse_policy(data)` is the one way to turn a mapping into a `Policy`: it validates the shape
(pydantic) and then the references between sections (a persona's providers exist, a route's
receivers exist, an alert rule's target and signal exist ...), and reports every problem with its
field path. `policy_json_schema()` is the JSON Schema of the same model; the CRD's
`openAPIV3Schema` is generated from it, so the CR and the YAML file are one format.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from empire.policies.alerting import AlertingPolicy
from empire.policies.backup import BackupPolicy
from empire.policies.common import StrictModel
from empire.policies.durations import Duration, duration_range
from empire.policies.errors import (
    Issue,
    PolicyError,
    duplicate_name_issues,
    issues_from_validation_error,
    raise_issues,
    unknown_choice,
)
from empire.policies.generation import Budget, CompliancePolicy, Persona, Provider, SpendPolicy
from empire.policies.scaling import Target
from empire.policies.storage import StoragePolicy

__all__ = ["IDLE_POLICY", "LoopPolicy", "Policy", "parse_policy", "policy_json_schema", "policy_version"]

IDLE_POLICY: dict[str, Any] = {"loop": {"dry_run": True}}
"""What the agent runs once no EmpireConfig is left: no targets, providers or personas, and dry
run, so the default storage and alerting sections journal what they would do and act on nothing."""


class LoopPolicy(StrictModel):
    """How often the agent ticks, and whether it acts or only decides and journals."""

    interval: Annotated[Duration, duration_range(timedelta(seconds=1), timedelta(hours=1))] = Field(
        default=timedelta(seconds=15), description="time between ticks (HPA: 15s); 1s to 1h"
    )
    dry_run: bool = Field(default=False, description="decide and journal every action, execute none")


class Policy(StrictModel):
    """The whole policy. Every section has defaults, so `{}` is a valid (idle) policy."""

    loop: LoopPolicy = Field(default_factory=LoopPolicy)
    targets: tuple[Target, ...] = Field(
        default=(), max_length=500, description="workloads the agent scales, each on its own signals"
    )
    providers: tuple[Provider, ...] = Field(
        default=(), max_length=100, description="generation APIs, each with its pool of accounts"
    )
    budget: Budget = Field(default_factory=Budget, description="global budget across providers")
    personas: tuple[Persona, ...] = Field(
        default=(), max_length=500, description="AI artists: what each generates, how often, through which providers"
    )
    spending: SpendPolicy = Field(default_factory=SpendPolicy, description="how the generation budget is spread")
    compliance: CompliancePolicy = Field(default_factory=CompliancePolicy)
    storage: StoragePolicy = Field(default_factory=StoragePolicy)
    alerting: AlertingPolicy = Field(default_factory=AlertingPolicy)
    backup: BackupPolicy = Field(default_factory=BackupPolicy, description="scheduled backups of the state database")

    @model_validator(mode="after")
    def _references(self) -> Policy:
        issues = reference_issues(self)
        if issues:
            raise_issues(issues)
        return self

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)

    def provider(self, name: str) -> Provider:
        for p in self.providers:
            if p.name == name:
                return p
        raise KeyError(name)


def reference_issues(p: Policy) -> list[Issue]:
    """Cross-section checks: names unique, every reference resolves; each issue at its exact path."""
    out: list[Issue] = []
    for section, items in (
        ("targets", p.targets),
        ("providers", p.providers),
        ("personas", p.personas),
        ("alerting.receivers", p.alerting.receivers),
        ("alerting.rules", p.alerting.rules),
    ):
        out.extend(duplicate_name_issues(section, [i.name for i in items]))
    providers = [x.name for x in p.providers]
    targets = {t.name: t for t in p.targets}
    personas = [x.name for x in p.personas]

    def check(path: str, kind: str, value: str, valid: list[str], of: str = "") -> bool:
        if value in valid:
            return True
        out.append(Issue(path, unknown_choice(kind, value, valid, of=of)))
        return False

    for i, prov in enumerate(p.providers):
        for j, fb in enumerate(prov.fallback):
            check(f"providers[{i}].fallback[{j}]", "provider", fb, providers)
    for i, per in enumerate(p.personas):
        for j, ref in enumerate(per.providers):
            check(f"personas[{i}].providers[{j}]", "provider", ref, providers)
        for j, ref in enumerate(per.platforms):
            check(f"personas[{i}].platforms[{j}]", "provider", ref, providers)
    tiers = [x.name for x in p.storage.tiers]
    for cls, spec in p.backup.classes().items():
        if spec.tier is not None:
            check(f"backup.{cls}.tier", "tier", spec.tier, tiers, of="storage.tiers")
    for i, rule in enumerate(p.alerting.rules):
        path = f"alerting.rules[{i}]"
        if check(f"{path}.target", "target", rule.target, list(targets)):
            signals = [s.name for s in targets[rule.target].signals]
            check(f"{path}.signal", "signal", rule.signal, signals, of=f"target {rule.target!r}")
        rem = rule.remediation
        if rem is None:
            continue
        if rem.scale is not None:
            check(f"{path}.remediation.scale.target", "target", rem.scale.target, list(targets))
        if rem.pause_persona is not None:
            check(f"{path}.remediation.pause_persona", "persona", rem.pause_persona, personas)
        if (d := rem.drain_account) is not None and check(
            f"{path}.remediation.drain_account.provider", "provider", d.provider, providers
        ):
            accounts = [a.name for a in p.provider(d.provider).accounts]
            check(
                f"{path}.remediation.drain_account.account",
                "account",
                d.account,
                accounts,
                of=f"provider {d.provider!r}",
            )
    return out


def parse_policy(data: Any, source: str | None = None, text: str | None = None) -> Policy:
    """Validate a mapping into a `Policy`, or raise `PolicyError` listing every problem.

    `source` names the file in messages; `text` (the YAML it came from) lets messages carry the
    line number of each problem.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([Issue("(root)", f"a policy is a mapping of sections, got {type(data).__name__}")], source)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        issues = issues_from_validation_error(exc, Policy, text)
    # Raised outside the handler: the ValidationError (which holds every input value, secrets
    # included) is not kept as the context of the PolicyError, so no traceback can print it.
    raise PolicyError(issues, source)


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the policy, as the YAML is written (aliases, strings for durations)."""
    return Policy.model_json_schema(by_alias=True, mode="validation")


def policy_version(policy: Policy) -> str:
    """A short content hash: equal policies have equal versions, whatever their YAML formatting."""
    canonical = json.dumps(policy.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
