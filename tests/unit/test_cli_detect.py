"""`empire detect` end to end: output files, row order, progress, and one-line errors (exit 2)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from empire.cli import main


def write_series(path: Path, n: int = 400, *, spike: int | None = None, header=("timestamp", "value")) -> None:
    rng = np.random.default_rng(0)
    t0 = np.datetime64("2024-03-01T00:00:00")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i in range(n):
            v = 10 + rng.normal(0, 1) + (30 if i == spike else 0)
            w.writerow([str(t0 + np.timedelta64(300 * i, "s")).replace("T", " "), f"{v:.3f}"])


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_detect_writes_one_row_per_input_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in" / "metric.csv"
    src.parent.mkdir()
    write_series(src, 400)
    out = tmp_path / "out"
    assert main(["detect", str(src), "--output-dir", str(out)]) == 0
    rows = read_rows(out / "metric.csv")
    assert rows[0] == ["timestamp", "anomaly_score"]
    assert [r[0] for r in rows[1:]] == [r[0] for r in read_rows(src)[1:]]
    scores = np.array([float(r[1]) for r in rows[1:]])
    assert scores.size == 400 and scores.min() >= 0 and scores.max() <= 1
    assert capsys.readouterr().err == ""  # no progress for a single file


def test_detect_several_files_reports_progress_and_custom_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_series(a, 300, header=("ts", "v"))
    write_series(b, 200, header=("ts", "v"))
    code = main(
        [
            "detect",
            str(a),
            str(b),
            "--output-dir",
            str(tmp_path / "o"),
            "--timestamp-column",
            "ts",
            "--value-column",
            "v",
        ]
    )
    assert code == 0
    assert len(read_rows(tmp_path / "o" / "a.csv")) == 301
    assert len(read_rows(tmp_path / "o" / "b.csv")) == 201
    err = capsys.readouterr().err
    assert "[1/2] a.csv" in err and "[2/2] b.csv" in err


def test_detect_flags_a_spike(tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    write_series(src, 1500, spike=1300)
    assert main(["detect", str(src), "--output-dir", str(tmp_path / "o")]) == 0
    scores = np.array([float(r[1]) for r in read_rows(tmp_path / "o" / "s.csv")[1:]])
    assert scores[1300] >= 0.5


def test_missing_values_score_zero(tmp_path: Path) -> None:
    src = tmp_path / "m.csv"
    src.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,\n2024-01-01 00:10:00,nan\n")
    assert main(["detect", str(src), "--output-dir", str(tmp_path / "o")]) == 0
    assert [r[1] for r in read_rows(tmp_path / "o" / "m.csv")[1:]] == ["0.000000"] * 3


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "no such CSV file"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n", ["--value-column", "cpu"], "available columns: timestamp, value"),
        ("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n", [], "line 3: value 'abc'"),
        (
            "timestamp,value\n2024-01-01 00:10:00,1\n2024-01-01 00:05:00,2\n",
            [],
            "line 3: timestamp '2024-01-01 00:05:00' is not after the previous row's '2024-01-01 00:10:00'",
        ),
        ("timestamp,value\n2024-01-01 00:10:00,1\n2024-01-01 00:10:00,2\n", [], "without duplicates"),
        ("timestamp,value\nyesterday,1\n", [], "line 2: timestamp 'yesterday'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, args: list[str], message: str
) -> None:
    src = tmp_path / "bad.csv"
    if content is not None:
        src.write_text(content)
    code = main(["detect", str(src), "--output-dir", str(tmp_path / "o"), *args])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def write_clock_step_back(path: Path, n: int = 1200, step_back_at: int = 900) -> list[str]:
    """A five-minute series whose clock goes back 55 minutes once, as NAB's machine_temperature."""
    rng = np.random.default_rng(1)
    t0 = np.datetime64("2024-03-01T00:00:00")
    stamps = []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        for i in range(n):
            offset = 300 * i - (3300 if i >= step_back_at else 0)
            ts = str(t0 + np.timedelta64(offset, "s")).replace("T", " ")
            stamps.append(ts)
            w.writerow([ts, f"{10 + rng.normal(0, 1):.3f}"])
    return stamps


def test_timestamps_going_back_are_an_error_by_default_with_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "clock.csv"
    write_clock_step_back(src)
    assert main(["detect", str(src), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "line 902: timestamp" in err and "--unordered keep" in err
    assert err.count("\n") == 1


def test_unordered_keep_scores_every_row_in_file_order(tmp_path: Path) -> None:
    src = tmp_path / "clock.csv"
    stamps = write_clock_step_back(src)
    out = tmp_path / "o"
    assert main(["detect", str(src), "--output-dir", str(out), "--unordered", "keep"]) == 0
    rows = read_rows(out / "clock.csv")[1:]
    assert [r[0] for r in rows] == stamps  # the input's own timestamps, in file order
    scores = np.array([float(r[1]) for r in rows])
    assert scores.size == 1200 and scores.min() >= 0.0 and scores.max() <= 1.0
    assert (scores[900:] >= 0.5).sum() == 0  # the clock step itself is not an anomaly of the metric


def test_scores_are_written_rounded_down_so_a_held_point_stays_below_the_threshold(tmp_path: Path) -> None:
    from empire.cli.detect import _format_score

    assert _format_score(np.nextafter(0.5, 0.0)) == "0.499999"
    assert _format_score(1.0) == "1.000000" and _format_score(0.0) == "0.000000"
    src = tmp_path / "s.csv"
    write_series(src, 1500, spike=1300)
    assert main(["detect", str(src), "--output-dir", str(tmp_path / "o")]) == 0
    scores = [r[1] for r in read_rows(tmp_path / "o" / "s.csv")[1:]]
    assert "0.500000" not in scores  # held points print below the threshold, not at it


def test_output_onto_its_own_input_is_refused_and_the_input_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "metrics.csv"
    src.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,2\n")
    before = src.read_text()
    assert main(["detect", str(src), "--output-dir", str(tmp_path)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    assert src.read_text() == before


def test_threshold_adds_a_label_column_that_agrees_with_the_scores(tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    write_series(src, 1500, spike=1300)
    assert main(["detect", str(src), "--output-dir", str(tmp_path / "o"), "--threshold", "0.5"]) == 0
    rows = read_rows(tmp_path / "o" / "s.csv")
    assert rows[0] == ["timestamp", "anomaly_score", "anomaly"] and len(rows) == 1501
    labels = np.array([int(r[2]) for r in rows[1:]])
    scores = np.array([float(r[1]) for r in rows[1:]])
    assert labels[1300] == 1 and np.array_equal(labels == 1, scores >= 0.5)


@pytest.mark.parametrize("bad", ["0", "1.5", "high"])
def test_threshold_outside_the_score_range_is_refused(tmp_path: Path, bad: str) -> None:
    src = tmp_path / "s.csv"
    write_series(src, 50)
    with pytest.raises(SystemExit) as exc:
        main(["detect", str(src), "--output-dir", str(tmp_path / "o"), "--threshold", bad])
    assert exc.value.code == 2


def test_one_bad_input_leaves_no_output_at_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`detect ok.csv bad.csv` wrote ok.csv's scores and then failed: a half-done result that
    looks like a whole one. Now every input is checked first and outputs appear together."""
    ok, bad = tmp_path / "ok.csv", tmp_path / "bad.csv"
    write_series(ok, 300)
    bad.write_text("timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:05:00,abc\n")
    out = tmp_path / "out"
    assert main(["detect", str(ok), str(bad), "--output-dir", str(out)]) == 2
    assert "bad.csv: line 3" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "ok.csv").write_text("an older result\n")
    assert main(["detect", str(ok), str(bad), "--output-dir", str(out)]) == 2
    assert [p.name for p in out.iterdir()] == ["ok.csv"] and (out / "ok.csv").read_text() == "an older result\n"


def test_scoring_in_blocks_is_scoring_whole_and_memory_stays_small() -> None:
    """`detect` on a 50 MB file held 5 GB: the detector kept ~2.5 KB of arrays per point when fed
    the whole series. Fed in blocks it scores identically in memory proportional to the block."""
    import tracemalloc

    from empire.cli.detect import BLOCK, score_series
    from empire.models.anomaly import AnomalyDetector

    rng = np.random.default_rng(3)
    n = 3 * BLOCK + 123
    values = 10 + rng.normal(0, 1, n)
    values[[500, 9000, 20000]] += 15
    values[100:120] = np.nan
    seconds = 1.7e9 + 60.0 * np.arange(n)
    whole = AnomalyDetector().fit(values, timestamps=seconds).scores_
    tracemalloc.start()
    try:
        blocks = score_series(values, seconds)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.array_equal(blocks, whole)
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB for {n} points"  # whole: ~60 MB for these points
