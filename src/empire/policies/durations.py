"""Durations (`30s`, `5m`, `1h30m`, `7d`) and byte sizes (`128KiB`, `10GB`) as policy field types.

Operators write durations the way Kubernetes and Prometheus do; the models hold `timedelta` and
integers so that the pure core never parses strings. Both types serialize back to the canonical
string, so `empire policy show` prints what an operator would write.

Every duration is finite and at most `MAX_DURATION` (ten years): `1000000000d` or `.inf` is an
error at its field path, never an `OverflowError` out of `timedelta` (which ends at 999,999,999
days) or arithmetic that overflows later (`now + duration`). A field with a narrower sane range
(`loop.interval`: 1s to 1h) says so with `duration_range`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = [
    "MAX_DURATION",
    "ByteSize",
    "Duration",
    "PositiveDuration",
    "duration_range",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
MAX_DURATION = timedelta(days=3650)


def _bounded(seconds: float, shown: Any) -> timedelta:
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"duration must be finite, got {shown}")
    if seconds < 0:
        raise ValueError(f"duration must not be negative, got {shown}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {shown} is longer than {format_duration(MAX_DURATION)} (ten years), the maximum")
    return timedelta(seconds=seconds)


def parse_duration(value: Any) -> timedelta:
    """Parse `90`, `90s`, `5m`, `1h30m`, `2d`, `1w` (numbers alone are seconds) into a timedelta,
    at most `MAX_DURATION`."""
    if isinstance(value, timedelta):
        return _bounded(value.total_seconds(), format_duration(value))
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h, 7d; got a boolean")
    if isinstance(value, int | float):
        try:
            return _bounded(float(value), value)
        except OverflowError:  # an int beyond any float
            raise ValueError("duration is longer than 3650d (ten years), the maximum") from None
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 5m, 1h, 7d; got {type(value).__name__}")
    text = value.strip().lower()
    shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return _bounded(float(text), shown)
    if not _DURATION_RE.match(text):
        raise ValueError(
            f"invalid duration {shown}: use a number with a unit, e.g. 30s, 5m, 1h, 1h30m, 7d "
            "(units: ms, s, m, h, d, w)"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(text))
    return _bounded(seconds, shown)


def format_duration(value: timedelta) -> str:
    """The shortest canonical spelling: `300s` -> `5m`, `5400s` -> `1h30m`."""
    total_ms = round(value.total_seconds() * 1000)
    if total_ms == 0:
        return "0s"
    parts: list[str] = []
    for unit, size_s in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        size = size_s * 1000
        if total_ms >= size:
            n, total_ms = divmod(total_ms, size)
            parts.append(f"{n}{unit}")
    if total_ms:
        parts.append(f"{total_ms}ms")
    return "".join(parts)


_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
    "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip
SIZE_PATTERN = r"^[0-9]+(\.[0-9]+)?\s*([kKmMgGtT]i?[bB]?|[bB])?$"


MAX_SIZE = 1 << 53
"""8 PiB: every size stays exact in a float and fits a 64-bit database column."""


def _size_bounded(n: float) -> int:
    if n != n or n < 0:
        raise ValueError("size must be a non-negative number")
    if n > MAX_SIZE:
        raise ValueError(f"size is larger than {format_size(MAX_SIZE)}, the maximum")
    return int(n)


def parse_size(value: Any) -> int:
    """Parse `512`, `128KiB`, `1.5GB`, `10Gi` into bytes (at most `MAX_SIZE`)."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 128KiB or 10GB; got a boolean")
    if isinstance(value, int):
        return _size_bounded(value if value <= MAX_SIZE else float("inf"))
    if isinstance(value, float):
        return _size_bounded(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size like 128KiB or 10GB; got {type(value).__name__}")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
        raise ValueError(f"invalid size {shown}: use e.g. 512, 128KiB, 64MB, 10GiB, 2TB")
    return _size_bounded(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


def format_size(n: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json-unless-none"),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "description": "e.g. 30s, 5m, 1h30m, 7d"}),
]
"""A non-negative duration written as `30s`, `5m`, `1h30m`, `7d` (or a number of seconds)."""


def duration_range(low: timedelta, high: timedelta, why: str = "") -> AfterValidator:
    """A narrower range for one field: `Annotated[Duration, duration_range(1s, 1h)]`; the error
    (at the field's path) names both ends and `why`."""

    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            reason = f" ({why})" if why else ""
            raise ValueError(
                f"must be between {format_duration(low)} and {format_duration(high)}{reason}, got {format_duration(value)}"
            )
        return value

    return AfterValidator(check)


PositiveDuration = Annotated[Duration, duration_range(timedelta(seconds=1), MAX_DURATION)]
"""A duration of at least 1s: a period something runs at, or a divisor (a half-life)."""

ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json-unless-none"),
    WithJsonSchema({"type": "string", "pattern": SIZE_PATTERN, "description": "e.g. 128KiB, 64MB, 10GiB"}),
]
"""A byte count written as `512`, `128KiB`, `64MB`, `10GiB`."""
