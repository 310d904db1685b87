"""Reading a metric series from a CSV file: `timestamp,value[,status]` (plain or .gz).

`empire forecast`, `empire detect` and `empire backtest` all take such files (recorded traces,
NAB files, exports from Prometheus). One reader, so they accept the same files and reject bad
ones with the same one-line messages: the file, the line, the column, and for a missing column
the columns that do exist. Timestamps are returned as written: each command parses them with the
rules it needs (the detector keeps file order, the forecaster a regular grid).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path

from empire.errors import ConfigError

__all__ = ["MISSING", "SeriesFile", "read_series_csv"]

MISSING = frozenset({"", "nan", "NaN", "NA", "null", "None"})
"""Cells read as a missing value (NaN): a gap, not an error."""

AUTO = "auto"


@dataclass(frozen=True)
class SeriesFile:
    path: Path
    timestamps: list[str]
    values: list[float]  # NaN where the cell is missing
    ok: list[bool]  # status column says "ok" (all True without a status column)
    value_column: str
    status_column: str | None

    def line(self, index: int) -> int:
        """The file line of row `index` (the header is line 1)."""
        return index + 2


def _open(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _missing_column(path: Path, column: str, option: str | None, columns: list[str]) -> ConfigError:
    available = ", ".join(columns) if columns else "none (empty file)"
    flag = f"{option}: " if option else ""
    return ConfigError(f"{path}: {flag}no column {column!r}; available columns: {available}")


def read_series_csv(
    path: str | Path,
    *,
    timestamp_column: str = "timestamp",
    value_column: str | None = None,
    status_column: str | None = AUTO,
    options: tuple[str | None, str | None, str | None] = (None, None, None),
) -> SeriesFile:
    """Read one series. `value_column=None`: the first column that is neither the timestamp nor
    the status. `status_column="auto"`: `status` when the file has one; None: ignore any status.
    `options` names the command-line flags of the three columns, for messages."""
    p = Path(path)
    try:
        fh = _open(p)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        with fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            if timestamp_column not in columns:
                raise _missing_column(p, timestamp_column, options[0], columns)
            if status_column == AUTO:
                status_column = "status" if "status" in columns else None
            if value_column is None:
                others = [c for c in columns if c not in (timestamp_column, status_column, "status")]
                if not others:
                    raise ConfigError(f"{p}: no value column besides {timestamp_column!r}")
                value_column = others[0]
            elif value_column not in columns:
                raise _missing_column(p, value_column, options[1], columns)
            if status_column is not None and status_column not in columns:
                raise _missing_column(p, status_column, options[2], columns)
            stamps: list[str] = []
            values: list[float] = []
            ok: list[bool] = []
            for row in reader:
                raw = (row.get(value_column) or "").strip()
                if raw in MISSING:
                    value = math.nan
                else:
                    try:
                        value = float(raw)
                    except ValueError:
                        raise ConfigError(
                            f"{p}: line {reader.line_num}: {value_column} {raw!r} is not a number"
                        ) from None
                stamps.append((row.get(timestamp_column) or "").strip())
                values.append(value)
                status = (row.get(status_column) or "").strip().lower() if status_column else "ok"
                ok.append(status == "ok")
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    return SeriesFile(p, stamps, values, ok, value_column, status_column)
