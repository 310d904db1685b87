"""The compliance gate on generated results. PURE.

A result passes when it has every required metadata field, contains no banned term (whole words,
case-insensitive, in the title, the prompt and any text metadata), is not a near-duplicate of a
recent title or prompt of the same persona, and carries a compliance score of at least
`min_score` (0.95 in the seed runbook). A failing result is quarantined, never published; the
problems say why, so an operator can release it by hand.

Near-duplicates: Jaccard similarity of character trigrams of the normalised text (lower case,
punctuation dropped). Trigrams catch "Neon Echo" vs "Neon Echoes" (which word sets miss) and are
cheap enough to compare a result against a persona's last few hundred releases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from empire.policies.generation import CompliancePolicy

__all__ = ["ComplianceResult", "check_compliance", "similarity"]

# Case, spacing and most punctuation do not make a title new; '#', '+' and '&' do in music
# ("Nocturne in C#" is not "Nocturne in C", "Rock & Roll" is not "Rock Roll").
_NON_WORD = re.compile(r"[^\w#+&]+")


def _norm(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


@lru_cache(maxsize=8192)  # a persona's recent releases are compared with every new result
def _trigrams(text: str) -> frozenset[str]:
    t = f"  {_norm(text)} "
    return frozenset(t[i : i + 3] for i in range(len(t) - 2))


def _jaccard(ta: frozenset[str], tb: frozenset[str]) -> float:
    if not ta or not tb:
        return 0.0
    return len(ta & tb) / len(ta | tb)


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of character trigrams, 0..1."""
    return _jaccard(_trigrams(a), _trigrams(b))


@dataclass(frozen=True)
class ComplianceResult:
    passed: bool
    score: float | None
    problems: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "score": self.score, "problems": list(self.problems)}


def _banned_in(text: str, terms: Iterable[str]) -> list[str]:
    low = text.lower()
    return [t for t in terms if t and re.search(rf"(?<!\w){re.escape(t.lower())}(?!\w)", low)]


def _closest(text: str, recent: Iterable[str]) -> tuple[float, str]:
    best, match = 0.0, ""
    mine = _trigrams(text)
    for r in recent:
        s = _jaccard(mine, _trigrams(r))
        if s > best:
            best, match = s, r
    return best, match


def check_compliance(
    meta: Mapping[str, Any],
    prompt: str,
    policy: CompliancePolicy,
    recent_titles: Iterable[str] = (),
    recent_prompts: Iterable[str] = (),
) -> ComplianceResult:
    problems: list[str] = []
    for field in policy.required_metadata:
        value = meta.get(field)
        if value is None or (isinstance(value, str) and not value.strip()):
            problems.append(f"missing metadata: {field}")
    texts = {"prompt": prompt, **{k: v for k, v in meta.items() if isinstance(v, str)}}
    for where, text in texts.items():
        for term in _banned_in(text, policy.banned_terms):
            problems.append(f"banned term {term!r} in {where}")
    title = str(meta.get("title") or "")
    if title:
        sim, match = _closest(title, recent_titles)
        if sim >= policy.near_duplicate_similarity:
            problems.append(f"title near-duplicate of {match!r} ({sim:.2f})")
    if prompt:
        sim, match = _closest(prompt, recent_prompts)
        if sim >= policy.near_duplicate_similarity:
            problems.append(f"prompt near-duplicate of {match!r} ({sim:.2f})")
    raw = meta.get("score")
    score: float | None
    try:
        score = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        score = None
    if score is None:
        problems.append("no compliance score")
    elif score < policy.min_score:
        problems.append(f"score {score:.3f} below {policy.min_score}")
    return ComplianceResult(not problems, score, tuple(problems))
