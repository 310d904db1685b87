"""Shared by the policy tests: a minimal valid target, and the error lines a bad policy yields."""

from __future__ import annotations

import pytest

from empire.policies.errors import PolicyError
from empire.policies.loading import load_policy_text

MINIMAL_TARGET = """
targets:
  - name: api
    workload: {name: api}
    max_replicas: 10
    signals:
      - {name: cpu, query: 'avg(cpu)', target: 0.7}
"""


def errors(text: str) -> list[str]:
    """The `file:line: path: message` lines of a policy that must fail (source `p.yaml`)."""
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    return str(info.value).splitlines()
