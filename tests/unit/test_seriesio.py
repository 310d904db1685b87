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
    assert s.seconds.tolist() == [1704067200.0, 1704067260.0, 1704067320.0]  # no offset: UTC
    assert s.values[0] == 5 and math.isnan(s.values[1]) and math.isnan(s.values[2])
    assert s.ok.tolist() == [True, False, True] and s.line(1) == 3
    assert read_series_csv(f, status_column=None).ok.tolist() == [True, True, True]


def test_gzip_files(tmp_path: Path) -> None:
    f = tmp_path / "t.csv.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("timestamp,value\n1,2\n3,4\n")
    assert read_series_csv(f).values.tolist() == [2.0, 4.0]


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
    with pytest.raises(ConfigError, match="no such CSV file"):
        read_series_csv(tmp_path / "missing.csv")
    bad = tmp_path / "bin.csv.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(ConfigError, match="cannot read"):
        read_series_csv(bad)


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    """Spreadsheet exports start with one; it made `timestamp` an unknown column with an
    invisible character in its name."""
    f = tmp_path / "bom.csv"
    f.write_bytes(b"\xef\xbb\xbftimestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,2\n")
    assert read_series_csv(f).values.tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("2024-01-01 00:01,1\n2024-01-01 00:00,2\n",
         "line 3: timestamp '2024-01-01 00:00' is not after the previous row's '2024-01-01 00:01': rows must be in "
         "time order, without duplicates"),
        ("2024-01-01 00:00,1\n2024-01-01 00:00,2\n", "line 3: timestamp '2024-01-01 00:00' is not after"),
        ("2024-01-01T01:00:00+01:00,1\n2024-01-01T00:00:00Z,2\n", "line 3: timestamp"),  # the same instant
        ("2024-01-01 00:00,1\n1e300,2\n", "line 3: timestamp '1e300' is not a timestamp"),
        ("2024-01-01 00:00,inf\n", "line 2: value 'inf' is not a finite number"),
    ],
)  # fmt: skip
def test_one_rule_for_order_and_values(tmp_path: Path, rows: str, message: str) -> None:
    """The backtest sorted such files and the forecaster summed duplicates, where detect refused them."""
    f = tmp_path / "t.csv"
    f.write_text("timestamp,value\n" + rows)
    with pytest.raises(ConfigError) as info:
        read_series_csv(f)
    assert str(info.value) == f"{f}: {message}" or str(info.value).startswith(f"{f}: {message}")
    if "not after" in message:
        assert len(read_series_csv(f, order="any")) == 2


def test_offsets_are_instants_or_wall_clock(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("timestamp,value\n2024-01-01T10:00:00+02:00,1\n2024-01-01T09:00:00Z,2\n")
    assert read_series_csv(f).seconds.tolist() == [1704096000.0, 1704099600.0]
    assert read_series_csv(f, clock="wall").seconds.tolist() == [1704103200.0, 1704099600.0]


def test_backtest_forecast_and_detect_refuse_the_same_unsorted_file(tmp_path: Path, capsys) -> None:
    from empire.cli import main

    f = tmp_path / "t.csv"
    f.write_text("timestamp,value\n" + "".join(f"2024-01-01T00:{m:02d}:00Z,{m}\n" for m in (0, 2, 1, 3)))
    commands = [
        ["backtest", str(f), "--no-progress"],
        ["forecast", "--input", str(f), "--value-column", "value"],
        ["detect", str(f), "--output-dir", str(tmp_path / "out")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        assert "line 4: timestamp '2024-01-01T00:01:00Z' is not after" in capsys.readouterr().err
