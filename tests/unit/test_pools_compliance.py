"""The compliance gate. PURE."""

from __future__ import annotations

from empire.agent.pools.compliance import check_compliance, similarity
from empire.policies.generation import CompliancePolicy

POLICY = CompliancePolicy(min_score=0.95, required_metadata=("title", "persona", "genre"), banned_terms=("explicit",))
GOOD = {"title": "Velvet Orbit", "persona": "luna", "genre": "synthwave", "score": 0.97}


def test_a_clean_result_passes() -> None:
    r = check_compliance(GOOD, "synthwave track, mood: dusk, 96 bpm", POLICY, ["Neon Tide"], ["lofi, rain, 80 bpm"])
    assert r.passed and r.problems == () and r.score == 0.97


def test_score_threshold_is_inclusive() -> None:
    assert check_compliance({**GOOD, "score": 0.95}, "", POLICY).passed
    r = check_compliance({**GOOD, "score": 0.9499}, "", POLICY)
    assert not r.passed and "below 0.95" in r.problems[0]
    assert check_compliance({**GOOD, "score": None}, "", POLICY).problems == ("no compliance score",)
    assert check_compliance({**GOOD, "score": "n/a"}, "", POLICY).problems == ("no compliance score",)


def test_missing_metadata() -> None:
    r = check_compliance({"title": "  ", "persona": "luna", "score": 1.0}, "", POLICY)
    assert set(r.problems) == {"missing metadata: title", "missing metadata: genre"}


def test_banned_terms_whole_words_case_insensitive() -> None:
    r = check_compliance({**GOOD, "title": "EXPLICIT Dreams"}, "a prompt", POLICY)
    assert r.problems == ("banned term 'explicit' in title",)
    assert check_compliance({**GOOD, "title": "Inexplicitness"}, "", POLICY).passed
    r = check_compliance(GOOD, "make it explicit please", POLICY)
    assert r.problems == ("banned term 'explicit' in prompt",)


def test_near_duplicate_titles_and_prompts() -> None:
    r = check_compliance({**GOOD, "title": "Velvet Orbit!"}, "", POLICY, recent_titles=["velvet orbit"])
    assert not r.passed and "near-duplicate of 'velvet orbit'" in r.problems[0]
    prompt = "synthwave track by luna, mood: dusk, 96 bpm, D minor"
    r = check_compliance(GOOD, prompt, POLICY, recent_prompts=[prompt.upper()])
    assert not r.passed and r.problems[0].startswith("prompt near-duplicate")
    other = "synthwave track by luna, mood: neon, 128 bpm, F# major"
    assert check_compliance(GOOD, prompt, POLICY, recent_prompts=[other]).passed


def test_similarity() -> None:
    assert similarity("Neon Echo", "neon echo") == 1.0
    assert similarity("Neon Echo", "Neon Echoes") > 0.6
    assert similarity("Neon Echo", "Glass River") < 0.2
    assert similarity("", "x") == 0.0
    assert similarity("Neon Echo!", "neon  echo") == 1.0  # punctuation and spacing do not count
    assert similarity("Nocturne in C#", "Nocturne in C") < 0.95  # a key is not punctuation
