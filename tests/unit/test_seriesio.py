"""The one CSV series reader behind `empire forecast`, `empire detect` and `empire backtest`."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from empire.errors import ConfigError
from empire.seriesio import read_series_csv


def test_reads_values_gaps_and_status(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text(
        "timestamp,requests,status\n2024-01-01 00:00,5,ok\n2024-01-01 00:01,,outage\n2024-01-01 00:02,NaN,OK\n"
    )
    s = read_series_csv(f)
    assert s.value_column == "requests" and s.status_column == "status"
    assert s.timestamps == ["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:02"]
    assert s.values[0] == 5 and math.isnan(s.values[1]) and math.isnan(s.values[2])
    assert s.ok == [True, False, True] and s.line(1) == 3
    assert read_series_csv(f, status_column=None).ok == [True, True, True]


def test_gzip_files(tmp_path: Path) -> None:
    f = tmp_path / "t.csv.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("timestamp,value\n1,2\n3,4\n")
    assert read_series_csv(f).values == [2.0, 4.0]


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("time,value\n1,2\n", {}, "no column 'timestamp'; available columns: time, value"),
        ("timestamp,value\n1,2\n", {"value_column": "cpu", "options": (None, "--value-column", None)},
         "--value-column: no column 'cpu'; available columns: timestamp, value"),
        ("timestamp,value\n1,2\n2,many\n", {}, "line 3: value 'many' is not a number"),
        ("timestamp\n1\n", {}, "no value column besides 'timestamp'"),
        ("", {}, "available columns: none (empty file)"),
    ],
)  # fmt: skip
def test_errors_name_file_line_and_columns(tmp_path: Path, content: str, kwargs: dict, message: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(ConfigError) as info:
        read_series_csv(f, **kwargs)
    assert str(info.value).startswith(str(f)) and message in str(info.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_series_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bin.csv.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match="cannot read"):
        read_series_csv(bad)
