"""Durations (`30s`, `5m`, `1h30m`, `7d`) and byte sizes (`128KiB`, `10GB`) as policy field types.

Operators write durations the way Kubernetes and Prometheus do; the models hold `timedelta` and
integers so that the pure core never parses strings. Both types serialize back to the canonical
string, so `empire policy show` prints what an operator would write.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = [
    "ByteSize",
    "Duration",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h|d|w))+$")
_PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"


def parse_duration(value: Any) -> timedelta:
    """Parse `90`, `90s`, `5m`, `1h30m`, `2d`, `1w` (numbers alone are seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h, 7d; got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value}")
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 30s, 5m, 1h, 7d; got {type(value).__name__}")
    text = value.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return timedelta(seconds=float(text))
    if not _DURATION_RE.match(text):
        raise ValueError(
            f"invalid duration {value!r}: use a number with a unit, e.g. 30s, 5m, 1h, 1h30m, 7d "
            "(units: ms, s, m, h, d, w)"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART_RE.findall(text))
    return timedelta(seconds=seconds)


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


def parse_size(value: Any) -> int:
    """Parse `512`, `128KiB`, `1.5GB`, `10Gi` into bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size like 128KiB or 10GB; got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a size like 128KiB or 10GB; got {type(value).__name__}")
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", value)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"invalid size {value!r}: use e.g. 512, 128KiB, 64MB, 10GiB, 2TB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


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

ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    PlainSerializer(format_size, return_type=str, when_used="json-unless-none"),
    WithJsonSchema({"type": "string", "pattern": SIZE_PATTERN, "description": "e.g. 128KiB, 64MB, 10GiB"}),
]
"""A byte count written as `512`, `128KiB`, `64MB`, `10GiB`."""
