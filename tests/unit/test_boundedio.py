"""Every file a user names is read with a size limit: one line naming the file and the limit, never
a process that grows until it is killed (EMPIRE_POLICY_FILE=/dev/zero once took 11.6 GB)."""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest

from empire.boundedio import InputTooLarge, bounded_lines, open_bounded_text, read_bounded, read_bounded_text
from empire.errors import ConfigError


def sparse(path: Path, size: int) -> Path:
    """A file of `size` zero bytes that takes no disk space."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_reads_up_to_the_limit_and_refuses_past_it(tmp_path: Path) -> None:
    exact = tmp_path / "exact"
    exact.write_bytes(b"x" * 1000)
    assert read_bounded(exact, 1000, "test file") == b"x" * 1000
    with pytest.raises(InputTooLarge) as info:
        read_bounded(exact, 999, "test file")
    assert str(info.value) == f"{exact}: larger than 999 bytes (the test file limit); nothing of it was used"


def test_endless_devices_and_decompression_bombs_stop_at_the_limit(tmp_path: Path) -> None:
    with pytest.raises(InputTooLarge, match="/dev/zero: larger than 1 MiB"):
        read_bounded("/dev/zero", 1 << 20, "test file")
    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wb") as f:
        f.write(b"0" * (8 << 20))  # 8 MiB of zeros is ~8 KB compressed
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InputTooLarge, match=r"bomb\.csv\.gz: larger than 1 MiB"):
        read_bounded(bomb, 1 << 20, "test file")
    with open_bounded_text(bomb, 1 << 20, "test file") as fh, pytest.raises(InputTooLarge):
        while fh.read(4096):
            pass


def test_text_drops_a_byte_order_mark_and_names_bad_bytes(tmp_path: Path) -> None:
    f = tmp_path / "bom.csv"
    f.write_bytes(b"\xef\xbb\xbftimestamp,value\n")
    assert read_bounded_text(f, 100, "CSV file") == "timestamp,value\n"
    with open_bounded_text(f, 100, "CSV file") as fh:
        assert fh.readline() == "timestamp,value\n"
    f.write_bytes(b"ok\xff")
    with pytest.raises(ConfigError, match=r"cannot read CSV file: not UTF-8 text \(byte 2\)"):
        read_bounded_text(f, 100, "CSV file")


def test_missing_files_and_directories_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope: no such CSV file"):
        read_bounded(tmp_path / "nope", 100, "CSV file")
    with pytest.raises(ConfigError, match="is a directory, expected a CSV file"):
        read_bounded(tmp_path, 100, "CSV file")


def test_standard_input_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("id,revenue\n" * 100))
    with pytest.raises(InputTooLarge, match="<stdin>: larger than 100 bytes"):
        read_bounded("-", 100, "CSV file")


def test_secret_kubeconfig_and_settings_files_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from empire.agent.kube.kubeconfig import load_cluster_config
    from empire.config.secrets import resolve_secret
    from empire.config.settings import KubernetesSettings, load_settings
    from empire.policies.common import SecretRef

    with pytest.raises(ConfigError, match=r"secret file:/dev/zero: larger than 64 KiB") as info:
        resolve_secret(SecretRef(file="/dev/zero"))
    assert str(info.value).count("\n") == 0
    huge = sparse(tmp_path / "kubeconfig", 5 << 20)
    with pytest.raises(ConfigError, match="larger than 4 MiB"):
        load_cluster_config(KubernetesSettings(mode="kubeconfig", kubeconfig=huge))
    deep = tmp_path / "deep-kubeconfig"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        load_cluster_config(KubernetesSettings(mode="kubeconfig", kubeconfig=deep))
    settings_file = sparse(tmp_path / "settings.yaml", 5 << 20)
    monkeypatch.setenv("EMPIRE_CONFIG_FILE", os.fspath(settings_file))
    with pytest.raises(ConfigError, match=r"settings\.yaml: larger than 4 MiB"):
        load_settings()


def test_a_file_without_newlines_is_refused_at_the_first_long_line() -> None:
    """/dev/zero has no newline: csv would have read it as one 512 MB line (560 MB of memory)."""
    from empire.seriesio import read_series_csv

    with pytest.raises(InputTooLarge, match="/dev/zero: line 1 is longer than 1,048,576 characters"):
        read_series_csv("/dev/zero")
    with open_bounded_text("/dev/zero", 1 << 30, "test file") as fh, pytest.raises(InputTooLarge):
        list(bounded_lines(fh, "/dev/zero", limit=100))


def test_a_corrupt_gzip_file_is_one_line(tmp_path: Path) -> None:
    """A .gz whose deflate stream is damaged was a zlib.error traceback out of detect and backtest."""
    from empire.seriesio import read_series_csv

    data = gzip.compress(b"timestamp,value\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(1, 5000)))
    bad = tmp_path / "corrupt.csv.gz"
    bad.write_bytes(data[:40] + bytes(b ^ 0x55 for b in data[40:200]) + data[200:])
    with pytest.raises(ConfigError, match=r"corrupt\.csv\.gz: cannot read CSV file: Error -3 while decompressing"):
        read_series_csv(bad)
    with pytest.raises(ConfigError, match="cannot read test file"):
        read_bounded(bad, 1 << 20, "test file")
    bad.write_bytes(data[:100])  # cut short
    with pytest.raises(ConfigError, match="cannot read CSV file: Compressed file ended"):
        read_series_csv(bad)
