"""Reading a metric series from a CSV file: `timestamp,value[,status]` (plain or .gz).

`empire forecast`, `empire detect` and `empire backtest` all take such files (recorded traces,
NAB files, exports from Prometheus). One reader, so they accept the same files and reject bad
ones with the same one-line messages: the file, the line, the column, and for a missing column
the columns that do exist. The rules, the same for every command:

* UTF-8, optionally gzip-compressed (`.gz`), at most `MAX_CSV_BYTES` decompressed
  (`empire.boundedio`); a byte-order mark is dropped (spreadsheet exports write one).
* A header row names the columns. Timestamps are epoch seconds or ISO 8601 (`2024-05-01 13:00`,
  `...T13:00:00Z`, `...+02:00`); one without an offset is UTC. Values are numbers; an empty cell
  or `nan`/`NA`/`null` is a gap, not an error; `inf` is an error.
* Rows are in time order, each strictly after the one before (no duplicates): a file that is not
  is refused at the first offending line, whatever the command, because each command would
  otherwise read it differently (the backtest sorted it, the forecaster summed duplicates, the
  detector refused it). `order="any"` is `empire detect --unordered keep`'s exception.

The file is read as a stream and kept as numpy arrays (17 bytes a row): a 50 MB export is about
30 MB in memory, never a Python object per cell.
"""

from __future__ import annotations

import csv
import math
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from empire.boundedio import MAX_CSV_BYTES, bounded_lines, open_bounded_text
from empire.errors import ConfigError

__all__ = ["MISSING", "SeriesFile", "iter_column", "parse_time", "read_series_csv"]

MISSING = frozenset({"", "nan", "NaN", "NA", "null", "None"})
"""Cells read as a missing value (NaN): a gap, not an error."""

AUTO = "auto"
WHAT = "CSV file"
_EPOCH_LIMIT = 253402300799.0  # 9999-12-31T23:59:59Z: every timestamp converts to a datetime


@dataclass(frozen=True)
class SeriesFile:
    path: Path
    seconds: np.ndarray  # sample times, epoch seconds (UTC, or the wall clock with clock="wall")
    values: np.ndarray  # float, NaN where the cell is missing
    ok: np.ndarray  # bool: the status column says "ok" (all True without a status column)
    value_column: str
    status_column: str | None

    def __len__(self) -> int:
        return len(self.values)

    def line(self, index: int) -> int:
        """The file line of row `index` (the header is line 1)."""
        return index + 2


def parse_time(text: str) -> tuple[float, float]:
    """`(instant, wall clock)` in epoch seconds of an epoch number or an ISO 8601 time (UTC when
    it has no offset); the wall clock adds the offset. `ValueError` when it is neither or lies
    outside the years 1-9999."""
    try:
        number = float(text)
    except ValueError:
        stamp = datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        instant = stamp.timestamp()
        offset = stamp.utcoffset()
        return instant, instant + (offset.total_seconds() if offset is not None else 0.0)
    if not math.isfinite(number) or abs(number) > _EPOCH_LIMIT:
        raise ValueError("epoch seconds out of range")
    return number, number


def _missing_column(path: Path, column: str, option: str | None, columns: list[str]) -> ConfigError:
    available = ", ".join(columns) if columns else "none (empty file)"
    flag = f"{option}: " if option else ""
    return ConfigError(f"{path}: {flag}no column {column!r}; available columns: {available}")


def _index(path: Path, header: list[str], column: str, option: str | None) -> int:
    try:
        return header.index(column)
    except ValueError:
        raise _missing_column(path, column, option, header) from None


def _cell(row: list[str], i: int) -> str:
    return row[i].strip() if i < len(row) else ""


def read_series_csv(
    path: str | Path,
    *,
    timestamp_column: str = "timestamp",
    value_column: str | None = None,
    status_column: str | None = AUTO,
    options: tuple[str | None, str | None, str | None] = (None, None, None),
    order: Literal["increasing", "any"] = "increasing",
    clock: Literal["utc", "wall"] = "utc",
    order_hint: str = "",
) -> SeriesFile:
    """Read one series. `value_column=None`: the first column that is neither the timestamp nor
    the status. `status_column="auto"`: `status` when the file has one; None: ignore any status.
    `options` names the command-line flags of the three columns, for messages; `order_hint` is
    added to the message of a row out of order (how the command can accept it)."""
    p = Path(path)
    seconds, values, ok = array("d"), array("d"), bytearray()
    try:
        with open_bounded_text(p, MAX_CSV_BYTES, WHAT) as fh:
            reader = csv.reader(bounded_lines(fh, str(p)))
            header = [c.strip() for c in next(reader, [])]
            t_i = _index(p, header, timestamp_column, options[0])
            if status_column == AUTO:
                status_column = "status" if "status" in header else None
            if value_column is None:
                others = [c for c in header if c not in (timestamp_column, status_column, "status")]
                if not others:
                    raise ConfigError(f"{p}: no value column besides {timestamp_column!r}")
                value_column = others[0]
            v_i = _index(p, header, value_column, options[1])
            s_i = _index(p, header, status_column, options[2]) if status_column is not None else None
            previous, previous_text = -math.inf, ""
            for row in reader:
                if not row:
                    continue  # a blank line
                line = reader.line_num
                stamp = _cell(row, t_i)
                try:
                    instant, wall = parse_time(stamp)
                except (ValueError, TypeError, OverflowError):
                    raise ConfigError(
                        f"{p}: line {line}: {timestamp_column} {stamp[:40]!r} is not a timestamp "
                        "(epoch seconds, or ISO 8601 like 2024-05-01 13:00:00)"
                    ) from None
                if order == "increasing" and instant <= previous:
                    raise ConfigError(
                        f"{p}: line {line}: {timestamp_column} {stamp!r} is not after the previous row's "
                        f"{previous_text!r}: rows must be in time order, without duplicates{order_hint}"
                    )
                previous, previous_text = instant, stamp
                raw = _cell(row, v_i)
                if raw in MISSING:
                    value = math.nan
                else:
                    try:
                        value = float(raw)
                    except ValueError:
                        raise ConfigError(f"{p}: line {line}: {value_column} {raw[:40]!r} is not a number") from None
                    if not math.isfinite(value):
                        raise ConfigError(f"{p}: line {line}: {value_column} {raw!r} is not a finite number")
                seconds.append(wall if clock == "wall" else instant)
                values.append(value)
                ok.append(s_i is None or _cell(row, s_i).lower() == "ok")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{p}: cannot read {WHAT}: {exc}") from None
    return SeriesFile(
        p,
        np.frombuffer(seconds, dtype=float),
        np.frombuffer(values, dtype=float),
        np.frombuffer(ok, dtype=bool),
        value_column,
        status_column,
    )


def iter_column(path: str | Path, column: str) -> Iterator[str]:
    """The cells of one column as written, row by row (for output that repeats the input's
    timestamps); the file was read by `read_series_csv` before, so it is known to be good."""
    p = Path(path)
    with open_bounded_text(p, MAX_CSV_BYTES, WHAT) as fh:
        reader = csv.reader(bounded_lines(fh, str(p)))
        i = _index(p, [c.strip() for c in next(reader, [])], column, None)
        for row in reader:
            if row:
                yield _cell(row, i)
