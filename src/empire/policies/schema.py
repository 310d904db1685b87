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
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from empire.policies.alerting import AlertingPolicy
from empire.policies.common import StrictModel, find_duplicates
from empire.policies.durations import Duration
from empire.policies.errors import Issue, PolicyError, issues_from_validation_error
from empire.policies.generation import Budget, CompliancePolicy, Persona, Provider
from empire.policies.scaling import Target
from empire.policies.storage import StoragePolicy

__all__ = ["LoopPolicy", "Policy", "parse_policy", "policy_json_schema", "policy_version"]


class LoopPolicy(StrictModel):
    interval: Duration = Field(default=timedelta(seconds=15), description="time between ticks (HPA: 15s)")
    dry_run: bool = Field(default=False, description="decide and journal every action, execute none")


class Policy(StrictModel):
    """The whole policy. Every section has defaults, so `{}` is a valid (idle) policy."""

    loop: LoopPolicy = Field(default_factory=LoopPolicy)
    targets: tuple[Target, ...] = ()
    providers: tuple[Provider, ...] = ()
    budget: Budget = Field(default_factory=Budget, description="global budget across providers")
    personas: tuple[Persona, ...] = ()
    compliance: CompliancePolicy = Field(default_factory=CompliancePolicy)
    storage: StoragePolicy = Field(default_factory=StoragePolicy)
    alerting: AlertingPolicy = Field(default_factory=AlertingPolicy)

    @model_validator(mode="after")
    def _references(self) -> Policy:
        issues = reference_issues(self)
        if issues:
            raise PydanticCustomError(
                "policy_references",
                "{summary}",
                {"summary": "; ".join(f"{i.path}: {i.message}" for i in issues), "issues": issues},
            )
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


def _choices(names: list[str]) -> str:
    return ", ".join(names) if names else "none defined"


def reference_issues(p: Policy) -> list[Issue]:
    """Cross-section checks: names unique, every reference resolves."""
    out: list[Issue] = []
    for section, items in (
        ("targets", p.targets),
        ("providers", p.providers),
        ("personas", p.personas),
        ("alerting.receivers", p.alerting.receivers),
        ("alerting.rules", p.alerting.rules),
    ):
        for dup in find_duplicates([i.name for i in items]):
            out.append(Issue(section, f"name {dup!r} is used more than once"))
    providers = [x.name for x in p.providers]
    targets = {t.name: t for t in p.targets}
    personas = [x.name for x in p.personas]
    for i, prov in enumerate(p.providers):
        for j, fb in enumerate(prov.fallback):
            if fb not in providers:
                out.append(
                    Issue(
                        f"providers[{i}].fallback[{j}]",
                        f"unknown provider {fb!r} (valid: {_choices(providers)})",
                    )
                )
    for i, per in enumerate(p.personas):
        for j, ref in enumerate(per.providers):
            if ref not in providers:
                out.append(
                    Issue(
                        f"personas[{i}].providers[{j}]",
                        f"unknown provider {ref!r} (valid: {_choices(providers)})",
                    )
                )
    for i, rule in enumerate(p.alerting.rules):
        path = f"alerting.rules[{i}]"
        if rule.target not in targets:
            out.append(Issue(f"{path}.target", f"unknown target {rule.target!r} (valid: {_choices(list(targets))})"))
        else:
            signals = [s.name for s in targets[rule.target].signals]
            if rule.signal not in signals:
                out.append(
                    Issue(
                        f"{path}.signal",
                        f"unknown signal {rule.signal!r} of target {rule.target!r} (valid: {_choices(signals)})",
                    )
                )
        rem = rule.remediation
        if rem is None:
            continue
        if rem.scale is not None and rem.scale.target not in targets:
            out.append(
                Issue(
                    f"{path}.remediation.scale.target",
                    f"unknown target {rem.scale.target!r} (valid: {_choices(list(targets))})",
                )
            )
        if rem.pause_persona is not None and rem.pause_persona not in personas:
            out.append(
                Issue(
                    f"{path}.remediation.pause_persona",
                    f"unknown persona {rem.pause_persona!r} (valid: {_choices(personas)})",
                )
            )
        if rem.drain_account is not None:
            d = rem.drain_account
            if d.provider not in providers:
                out.append(
                    Issue(
                        f"{path}.remediation.drain_account.provider",
                        f"unknown provider {d.provider!r} (valid: {_choices(providers)})",
                    )
                )
            else:
                accounts = [a.name for a in p.provider(d.provider).accounts]
                if d.account not in accounts:
                    out.append(
                        Issue(
                            f"{path}.remediation.drain_account.account",
                            f"unknown account {d.account!r} of provider {d.provider!r} (valid: {_choices(accounts)})",
                        )
                    )
    return out  # fmt: skip


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
        raise PolicyError(issues_from_validation_error(exc, Policy, text), source) from None


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the policy, as the YAML is written (aliases, strings for durations)."""
    return Policy.model_json_schema(by_alias=True, mode="validation")


def policy_version(policy: Policy) -> str:
    """A short content hash: equal policies have equal versions, whatever their YAML formatting."""
    canonical = json.dumps(policy.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
