"""Policies: the YAML an operator edits (and the EmpireConfig `spec`), validated once into frozen models."""

from empire.policies.errors import Issue, PolicyError
from empire.policies.loading import (
    LoadedPolicy,
    PolicyWatcher,
    default_policy_path,
    load_policy,
    load_policy_text,
)
from empire.policies.schema import Policy, parse_policy, policy_json_schema, policy_version

__all__ = [
    "Issue",
    "LoadedPolicy",
    "Policy",
    "PolicyError",
    "PolicyWatcher",
    "default_policy_path",
    "load_policy",
    "load_policy_text",
    "parse_policy",
    "policy_json_schema",
    "policy_version",
]
