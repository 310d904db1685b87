"""Loading policy files and hot reload: bad files are rejected and the running policy stays."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from empire.errors import ConfigError
from empire.policies import PolicyError, PolicyWatcher, load_policy

GOOD = """
targets:
  - name: api
    workload: {name: api}
    max_replicas: 10
    signals: [{name: cpu, query: 'avg(cpu)', target: 0.7}]
"""


def test_malformed_yaml_gives_line(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("targets:\n  - name: [unclosed\n")
    with pytest.raises(PolicyError) as info:
        load_policy(f)
    (line,) = str(info.value).splitlines()
    assert line.startswith(f"{f}:3: (yaml): malformed YAML")


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("loop: {interval: 5s}\nloop: {interval: 10s}\n")
    with pytest.raises(PolicyError, match="duplicate key 'loop'"):
        load_policy(f)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(PolicyError, match=r"\(root\): a policy is a mapping of sections, got list"):
        load_policy(f)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such policy file"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_policy(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy(binary)


def test_watcher_swaps_valid_edits_and_keeps_policy_on_invalid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    seen = []
    w = PolicyWatcher(f, on_change=seen.append)
    first = w.current
    assert w.check() is False  # unchanged

    f.write_text(GOOD + "  # a comment only\n")
    assert w.check() is False and w.current is first  # same policy, new text

    f.write_text(GOOD.replace("max_replicas: 10", "max_replicas: 20"))
    assert w.check() is True
    assert w.current.policy.targets[0].max_replicas == 20 and seen == [w.current]

    good = w.current
    caplog.set_level(logging.ERROR)
    f.write_text(GOOD.replace("max_replicas: 10", "max_replicas: -3"))
    assert w.check() is False
    assert w.current is good  # the previous policy keeps running
    assert "policy reload rejected" in caplog.text and "targets[0].max_replicas" in caplog.text
    assert w.last_error is not None

    f.unlink()
    assert w.check() is False and w.current is good

    f.write_text(GOOD.replace("max_replicas: 10", "max_replicas: 30"))
    assert w.check() is True and w.current.policy.targets[0].max_replicas == 30 and w.last_error is None
