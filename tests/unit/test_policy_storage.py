"""Storage tiers must be different places: two tiers in one directory (or one inside the other)
would make a move delete the only copy.

Found by audit: two tiers with the same `root` were accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from policy_text import errors

from empire.policies.errors import PolicyError
from empire.policies.loading import load_policy_text
from empire.policies.schema import parse_policy
from empire.policies.storage import overlapping_roots

CONSEQUENCE = (
    ": a move between them would delete the only copy, and each tier would list the other's objects; "
    "give every tier its own directory, none inside another"
)


def storage(hot: str | None, warm: str | None, backend: str = "local", extra: str = "") -> str:
    def root(r: str | None) -> str:
        return f", root: '{r}'" if r is not None else ""

    return f"""storage:
  backend: {backend}
{extra}  tiers:
    - {{name: hot, cost_per_gb_month: 0.02{root(hot)}}}
    - {{name: warm, cost_per_gb_month: 0.01, enter_when: {{idle_days: 30}}{root(warm)}}}
"""


def test_same_root_is_rejected_naming_both_tiers_and_the_path() -> None:
    assert errors(storage("/data/x", "/data/x/")) == [
        "p.yaml:5: storage.tiers[1].root: tier 'warm' root '/data/x/' is the same directory as the root '/data/x' "
        "of tier 'hot'" + CONSEQUENCE
    ]


@pytest.mark.parametrize(
    ("hot", "warm", "relation"),
    [
        ("/data", "/data/warm", "is inside"),
        ("/data/hot/", "/data", "contains"),
        ("/data/./tiers//hot", "/data/tiers/hot/sub/..", "is the same directory as"),
    ],
)
def test_nested_or_equal_after_normalising_is_rejected(hot: str, warm: str, relation: str) -> None:
    (line,) = errors(storage(hot, warm))
    assert line.startswith(f"p.yaml:5: storage.tiers[1].root: tier 'warm' root '{warm}'")
    assert f"{relation} the root '{hot}' of tier 'hot': a move between them" in line


def test_a_symlink_into_another_tier_is_caught(tmp_path: Path) -> None:
    real = tmp_path / "disk" / "hot"
    real.mkdir(parents=True)
    link = tmp_path / "warm-link"
    link.symlink_to(real / "warm")
    (line,) = errors(storage(str(real), str(link)))
    assert f"tier 'warm' root '{link}' (resolves to {real / 'warm'}) is inside the root '{real}' of tier 'hot'" in line


def test_a_relative_root_is_compared_where_it_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (line,) = errors(storage(str(tmp_path / "tiers"), "tiers/warm"))
    assert "tier 'warm' root 'tiers/warm'" in line and f"is inside the root '{tmp_path / 'tiers'}'" in line


@pytest.mark.parametrize(
    ("hot", "warm"), [("/data/hot", "/data/hot2"), ("/data/hot", "/data/warm"), (None, None), ("/data/hot", None)]
)
def test_separate_directories_are_accepted(hot: str | None, warm: str | None) -> None:
    tiers = load_policy_text(storage(hot, warm)).policy.storage.tiers
    assert [t.root for t in tiers] == [hot, warm]


def test_roots_are_not_used_by_the_s3_backend() -> None:
    text = storage("/data/x", "/data/x", backend="s3", extra="  s3: {bucket: content}\n")
    assert load_policy_text(text).policy.storage.backend == "s3"


def test_every_overlapping_pair_is_reported() -> None:
    roots = {"hot": "/d", "warm": "/d/w", "cold": "/e", "archive": "/e/"}
    assert [(a, b) for a, b, _ in overlapping_roots(roots)] == [("hot", "warm"), ("cold", "archive")]


def test_callers_can_check_default_roots_too(tmp_path: Path) -> None:
    """The tiering setup knows the data dir: a root that holds the default tier directories overlaps."""
    roots = {"hot": str(tmp_path), "warm": str(tmp_path / "tiers" / "warm")}
    ((a, b, why),) = overlapping_roots(roots)
    assert (a, b) == ("hot", "warm") and why.startswith(f"root '{tmp_path / 'tiers' / 'warm'}' is inside")


def test_other_storage_errors_name_their_field() -> None:
    text = """storage:
  backend: s3
  tiers:
    - {name: hot, cost_per_gb_month: 1, enter_when: {idle_days: 1}}
    - {name: warm, cost_per_gb_month: 1}
    - {name: hot, cost_per_gb_month: 1, enter_when: {idle_days: 2}}
"""
    assert errors(text) == [
        "p.yaml:6: storage.tiers[2].name: name 'hot' is already used by tiers[0]",
        "p.yaml:4: storage.tiers[0].enter_when: the first tier (hot) is the hottest: it takes no enter_when rule",
        "p.yaml:5: storage.tiers[1].enter_when: tier 'warm' needs rules (only the first tier has none)",
        "p.yaml:1: storage.s3: required when backend is s3 (bucket, endpoint_url, ...)",
    ]
    with pytest.raises(PolicyError, match=r"^storage\.s3\.secret_access_key: give both access_key_id and"):
        parse_policy({"storage": {"s3": {"bucket": "content", "access_key_id": {"env": "K"}}}})
