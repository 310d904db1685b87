"""A reader that stops early (`empire jobs list --format json | head -1`) ends the command quietly:
no BrokenPipeError traceback, no "Exception ignored" at exit, exit code 0.

The subprocess tests give the CLI a pipe whose read end is already closed, so the very first write
(or the final flush of what Python buffered) fails with EPIPE, every time, without racing a reader.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from empire.cli import main

COMMANDS = [
    ["version"],
    ["--help"],
    ["jobs", "list", "--help"],
    ["policy", "schema"],
    ["config", "show"],
    ["jobs", "list", "--format", "json"],
    ["pools", "status", "--format", "json"],
]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMPIRE_")}
    env["EMPIRE_DATA_DIR"] = str(tmp_path_factory.mktemp("pipe") / "data")
    subprocess.run([sys.executable, "-m", "empire.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    return env


def run_into_closed_pipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader has gone before the first byte is written
    try:
        return subprocess.run(
            [sys.executable, "-m", "empire.cli", *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
            env=env, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_closed_reader_is_quiet(cli_env: dict[str, str], args: list[str], buffered: bool) -> None:
    """Buffered: the error comes from the final flush; unbuffered: from the print itself."""
    env = dict(cli_env)
    env.pop("PYTHONUNBUFFERED", None)
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    res = run_into_closed_pipe(args, env)
    assert res.stderr == ""
    assert res.returncode == 0


def test_reader_that_closes_after_one_line(cli_env: dict[str, str]) -> None:
    """As `empire policy schema | head -1`: the reader takes the first line and goes. The pipe is
    shrunk to one page so the writer is still writing (blocked) when the reader closes."""
    import fcntl

    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)
    proc = subprocess.Popen(
        [sys.executable, "-m", "empire.cli", "policy", "schema"], stdout=write_end, stderr=subprocess.PIPE,
        env=cli_env, text=True,
    )  # fmt: skip
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as reader:
        assert reader.read(2) == b"{\n"  # the first line, then the reader closes
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 0
    assert err == ""


def test_broken_pipe_inside_a_task_group_is_quiet_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A handler printing from inside an anyio task group raises an exception group, not the error."""
    from empire.cli import version

    def broken(args: argparse.Namespace) -> int:
        raise BaseExceptionGroup("unhandled errors in a TaskGroup", [BrokenPipeError(32, "Broken pipe")])

    monkeypatch.setattr(version, "run", broken)
    assert main(["version"]) == 0
    assert capsys.readouterr().err == ""


def test_other_errors_in_a_group_still_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    from empire.cli import version

    def mixed(args: argparse.Namespace) -> int:
        raise BaseExceptionGroup("two", [BrokenPipeError(32, "Broken pipe"), RuntimeError("real bug")])

    monkeypatch.setattr(version, "run", mixed)
    with pytest.raises(BaseExceptionGroup):
        main(["version"])
