"""Loading policy files and hot reload: bad files are rejected and the running policy stays."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from policy_text import errors

from empire.errors import ConfigError
from empire.policies.errors import PolicyError
from empire.policies.loading import PolicyWatcher, load_policy

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


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdef", "bcdefg", strict=True)
)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("loop: " + "[" * 5000 + "]" * 5000 + "\n", "p.yaml:1: (yaml): malformed YAML: nested more than 64 levels deep"),
        ("loop:\n  interval: " + "9" * 5000 + "\n",
         "p.yaml:2: (yaml): malformed YAML: cannot read the value '9999999999999999999999999999999999999...': "
         "too many digits"),
        ("loop:\n  interval: 2999-13-45\n",
         "p.yaml:2: (yaml): malformed YAML: cannot read the value '2999-13-45': month must be in 1..12"),
        (LAUGHS, "p.yaml:1: (yaml): malformed YAML: aliases expand to 12,345,685 nodes, more than 200,000"),
        ("loop: {interval: 1000000000d}\n",
         "p.yaml:1: loop.interval: duration '1000000000d' is longer than 3650d (ten years), the maximum"),
        ("loop: {interval: .inf}\n", "p.yaml:1: loop.interval: duration must be finite, got inf"),
        ("loop: {interval: 0s}\n", "p.yaml:1: loop.interval: must be between 1s and 1h, got 0s"),
        ("loop: {interval: 2h}\n", "p.yaml:1: loop.interval: must be between 1s and 1h, got 2h"),
        ("storage: {access_half_life: 0s}\n", "p.yaml:1: storage.access_half_life: must be between 1s and 3650d, got 0s"),
    ],
)  # fmt: skip
def test_every_bad_document_is_a_policy_error_at_its_line(text: str, line: str) -> None:
    """Each was a RecursionError, OverflowError or ValueError traceback, or (0s) accepted."""
    assert errors(text) == [line]


def test_oversize_and_endless_files_are_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 110_000)  # 1.1 MB of comments
    with pytest.raises(ConfigError, match=r"big.yaml: larger than 1 MiB \(the policy file limit\)"):
        load_policy(big)
    with pytest.raises(ConfigError, match=r"/dev/zero: larger than 1 MiB"):
        load_policy("/dev/zero")


def test_watcher_rejects_whatever_goes_wrong_and_keeps_the_policy(tmp_path: Path, monkeypatch) -> None:
    import empire.policies.loading as loading

    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    w = PolicyWatcher(f)
    first = w.current
    f.write_text(GOOD.replace("max_replicas: 10", "max_replicas: 20"))

    def broken(text: str, source: str) -> None:
        raise RuntimeError("a defect")

    monkeypatch.setattr(loading, "load_policy_text", broken)
    assert w.check() is False and w.current is first
    assert w.last_error == f"{f}: could not be validated: RuntimeError: a defect"
