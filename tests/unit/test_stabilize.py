"""`stabilize()` as a table of HPA's documented behaviours (kubernetes.io HPA "Configurable scaling
behavior" and the controller's normalizeDesiredReplicasWithBehaviors)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from empire.agent.stabilizing import ScaleEvent, TargetHistory, stabilize
from empire.agent.types import Reason, Recommendation
from empire.policies.scaling import Target

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
R = Reason


def target(**behavior: Any) -> Target:
    body: dict[str, Any] = {
        "name": "web", "workload": {"name": "web"}, "min_replicas": behavior.pop("min", 1),
        "max_replicas": behavior.pop("max", 100), "signals": [{"name": "cpu", "query": "q", "target": 0.5}],
    }  # fmt: skip
    if behavior:
        body["behavior"] = behavior
    return Target.model_validate(body)


def rec(current: int, raw: int, **kw: Any) -> Recommendation:
    return Recommendation(target="web", at=NOW, current=current, replicas=raw, reasons=(), **kw)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def hist(recs: list[tuple[float, int]] = (), events: list[tuple[float, int]] = ()) -> TargetHistory:  # type: ignore[assignment]
    return TargetHistory(
        recommendations=tuple((ago(s), r) for s, r in recs), events=tuple(ScaleEvent(ago(s), c) for s, c in events)
    )


NO_WINDOWS = {
    "scale_down": {"stabilization_window": "0s", "policies": [{"type": "percent", "value": 100, "period": "15s"}]}
}
DOCS_DOWN = {  # the docs' example: 4 pods or 10 % per minute, whichever removes more (select max)
    "scale_down": {
        "stabilization_window": "0s",
        "policies": [{"type": "pods", "value": 4, "period": "60s"}, {"type": "percent", "value": 10, "period": "60s"}],
    }
}

CASES = [
    # id, behavior, current, raw, history, expected desired, expected reasons
    ("default-up-doubles-or-plus-4: 1 -> 10 gives 5", {}, 1, 10, hist(), 5, (R.rate_limited_up,)),
    ("default-up: 10 -> 50 gives 20 (100% beats 4 pods)", {}, 10, 50, hist(), 20, (R.rate_limited_up,)),
    ("default-up: within limit goes straight", {}, 10, 14, hist(), 14, ()),
    (
        "default-up: +4 earlier this period: limit is the current 8",
        {},
        8,
        30,
        hist(events=[(10, 4)]),
        8,
        (R.rate_limited_up,),
    ),
    ("default-up: scale-up period over", {}, 8, 30, hist(events=[(15, 4)]), 16, (R.rate_limited_up,)),
    ("default-down: 5 min window keeps the highest", {}, 10, 4, hist([(200, 10), (100, 8)]), 10, (R.stabilized_down,)),
    ("default-down: window max below current", {}, 10, 4, hist([(200, 7), (100, 6)]), 7, (R.stabilized_down,)),
    ("default-down: old samples outside the window", {}, 10, 4, hist([(301, 10), (300, 9)]), 4, ()),
    ("default-down: restart records current first", {}, 10, 2, hist(), 10, (R.stabilized_down,)),
    ("docs-down: 80 -> 10, first step removes 8", DOCS_DOWN, 80, 10, hist(), 72, (R.rate_limited_down,)),
    (
        "docs-down: same minute, no further removal",
        DOCS_DOWN,
        72,
        10,
        hist(events=[(30, -8)]),
        72,
        (R.rate_limited_down,),
    ),
    (
        "docs-down: next minute 72 -> 64 (10% rounds to 8)",
        DOCS_DOWN,
        72,
        10,
        hist(events=[(60, -8)]),
        64,
        (R.rate_limited_down,),
    ),
    ("docs-down: under 40 replicas the 4 pods policy wins", DOCS_DOWN, 30, 10, hist(), 26, (R.rate_limited_down,)),
    (
        "select-min down: at most 5 pods or 10 %, whichever is less",
        {
            "scale_down": {
                "stabilization_window": "0s",
                "select": "min",
                "policies": [
                    {"type": "pods", "value": 5, "period": "60s"},
                    {"type": "percent", "value": 10, "period": "60s"},
                ],
            }
        },
        100,
        10,
        hist(),
        95,
        (R.rate_limited_down,),
    ),
    (
        "select-disabled down: never scales down",
        {"scale_down": {"stabilization_window": "0s", "select": "disabled"}},
        10,
        2,
        hist(),
        10,
        (R.scaling_disabled,),
    ),
    (
        "select-disabled up: never scales up",
        {"scale_up": {"stabilization_window": "0s", "select": "disabled"}},
        3,
        9,
        hist(),
        3,
        (R.scaling_disabled,),
    ),
    (
        "scale-up window: lowest recent recommendation bounds the rise",
        {"scale_up": {"stabilization_window": "60s", "policies": [{"type": "percent", "value": 900, "period": "15s"}]}},
        4,
        8,
        hist([(30, 5), (90, 2)]),
        5,
        (R.stabilized_up,),
    ),
    (
        "scale-up window: a sample exactly at the cutoff is outside (strict After)",
        {"scale_up": {"stabilization_window": "60s", "policies": [{"type": "pods", "value": 10, "period": "15s"}]}},
        4,
        8,
        hist([(60, 5)]),
        8,
        (),
    ),
    (
        "pods rate limit: +4 per 15s",
        {"scale_up": {"stabilization_window": "0s", "policies": [{"type": "pods", "value": 4, "period": "15s"}]}},
        2,
        20,
        hist(),
        6,
        (R.rate_limited_up,),
    ),
    ("max clamp wins over a looser rate limit", {"max": 12}, 10, 30, hist(), 12, (R.clamped_max,)),
    ("min clamp wins over a looser rate limit", {"min": 3, **NO_WINDOWS}, 10, 1, hist(), 3, (R.clamped_min,)),
    ("percent rate reaching zero is clamped to min", {"min": 2, **NO_WINDOWS}, 5, 0, hist(), 2, (R.clamped_min,)),
    ("scale to zero when min is 0 and the data says so", {"min": 0, **NO_WINDOWS}, 5, 0, hist(), 0, ()),
    ("current above max is brought down first", {"max": 8}, 12, 20, hist(), 8, (R.clamped_max,)),
    ("current below min is brought up first", {"min": 4}, 2, 1, hist(), 4, (R.clamped_min,)),
    ("raw equal to current: no change", {}, 6, 6, hist([(100, 9)]), 6, ()),
    (
        "percent up rounds up (HPA: ceil)",
        {"scale_up": {"stabilization_window": "0s", "policies": [{"type": "percent", "value": 10, "period": "60s"}]}},
        3,
        10,
        hist(),
        4,
        (R.rate_limited_up,),
    ),
    (
        "percent up: 10 % of 10 adds exactly one",
        {"scale_up": {"stabilization_window": "0s", "policies": [{"type": "percent", "value": 10, "period": "60s"}]}},
        10,
        30,
        hist(),
        11,
        (R.rate_limited_up,),
    ),
]


@pytest.mark.parametrize(("behavior", "current", "raw", "history", "desired", "reasons"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_hpa_behaviour_table(behavior, current, raw, history, desired, reasons):
    out = stabilize(target(**dict(behavior)), rec(current, raw), history, NOW)
    assert (out.desired, out.reasons) == (desired, reasons)


def test_raw_recommendation_is_recorded_and_old_ones_pruned():
    h = hist([(400, 3), (100, 9)])
    out = stabilize(target(), rec(10, 4), h, NOW)
    assert out.history.recommendations == ((ago(100), 9), (NOW, 4))


def test_repeated_ticks_walk_down_after_the_window():
    """Load drops at t=0 from 10 to 2 replicas' worth: held for 5 minutes, then allowed at once."""
    t = target()
    history, current, at, seen = TargetHistory(), 10, NOW, []
    history = history.record(at - timedelta(seconds=1), 10, timedelta(seconds=300))
    for _ in range(24):  # 6 minutes of 15 s ticks
        out = stabilize(t, Recommendation("web", at, current, 2, ()), history, at)
        history, seen = out.history, [*seen, out.desired]
        if out.desired != current:
            history = history.scaled(at, current, out.desired, timedelta(seconds=15))
            current = out.desired
        at += timedelta(seconds=15)
    assert seen[:20] == [10] * 20 and seen[-1] == 2


def test_hold_and_bypass():
    t = target(max=10)
    assert stabilize(t, rec(5, 5, hold=True), hist(), NOW).desired == 5
    pinned = stabilize(t, rec(5, 1, bypass_stabilization=True), hist([(10, 9)]), NOW)
    assert (pinned.desired, pinned.reasons) == (1, ())
    assert stabilize(t, rec(5, 30, bypass_stabilization=True), hist(), NOW).reasons == (R.clamped_max,)


def test_max_allowed_from_a_capacity_breach_raises_the_ceiling():
    out = stabilize(target(max=10), rec(10, 14, max_allowed=11), hist(), NOW)
    assert (out.desired, out.reasons) == (11, (R.clamped_max,))
