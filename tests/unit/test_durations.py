from datetime import timedelta

import pytest

from empire.policies.durations import format_duration, format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("7d", 604800), ("1w", 604800),
     ("250ms", 0.25), (90, 90), ("90", 90), ("0s", 0), ("1.5h", 5400)],
)  # fmt: skip
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["5 min", "1x", "", "-5s", "h", True, -1, None])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (5400, "1h30m"), (0, "0s"), (90061, "1d1h1m1s"), (0.25, "250ms")]
)
def test_format_duration_is_canonical(seconds: float, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "n"), [("512", 512), ("128KiB", 131072), ("64MB", 64_000_000), ("10Gi", 10 * 1024**3), (7, 7)]
)
def test_parse_size(text: object, n: int) -> None:
    assert parse_size(text) == n


def test_parse_size_rejects_and_formats() -> None:
    with pytest.raises(ValueError):
        parse_size("12 parsecs")
    assert format_size(131072) == "128KiB" and format_size(1000) == "1000"


@pytest.mark.parametrize(
    ("bad", "message"),
    [("1000000000d", "longer than 3650d"), (float("inf"), "must be finite"), (float("nan"), "must be finite"),
     ("9" * 400 + "s", "must be finite"), (10**400, "longer than 3650d"), ("3651d", "longer than 3650d"),
     (timedelta(days=4000), "longer than 3650d")],
)  # fmt: skip
def test_parse_duration_is_bounded(bad: object, message: str) -> None:
    """These were OverflowErrors out of timedelta (a traceback, and an invisible rejected reload)."""
    with pytest.raises(ValueError, match=message):
        parse_duration(bad)
    assert parse_duration("3650d") == timedelta(days=3650)


@pytest.mark.parametrize("bad", ["9" * 400, 10**400, float("inf"), float("nan"), 2**60, "16PiB"])
def test_parse_size_is_bounded(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)
