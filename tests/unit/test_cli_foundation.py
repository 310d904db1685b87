"""The CLI's foundation commands: exit codes and one-line errors, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from empire.cli import main
from empire.policies.loading import default_policy_path


@pytest.fixture(autouse=True)
def data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("EMPIRE_DATABASE_URL", raising=False)
    monkeypatch.delenv("EMPIRE_CONFIG_FILE", raising=False)
    return tmp_path / "data"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("empire ")


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "policy" in out and "EMPIRE_" in out


def test_validate_shipped_policy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "validate", str(default_policy_path())]) == 0
    assert "valid (version" in capsys.readouterr().out


def test_validate_rejects_with_path_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "loop: {intervall: 5s}\ntargets:\n  - name: api\n    workload: {name: api}\n    max_replicas: -1\n    signals: []\n"
    )
    good = tmp_path / "good.yaml"
    good.write_text("{}\n")
    assert main(["policy", "validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert f"{good}: valid" in captured.out
    lines = captured.err.strip().splitlines()
    assert f"{bad}:1: loop.intervall: unknown key 'intervall'; did you mean 'interval'?" in lines[0]
    assert any(line.startswith(f"{bad}:5: targets[0].max_replicas:") for line in lines)
    assert any(line.startswith(f"{bad}:6: targets[0].signals:") for line in lines)
    assert "Traceback" not in captured.err


def test_show_fills_defaults(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "targets: [{name: api, workload: {name: api}, max_replicas: 3, signals: [{name: cpu, query: q, target: 0.7}]}]\n"
    )
    assert main(["policy", "show", str(f), "--format", "json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["targets"][0]["behavior"]["scale_down"]["stabilization_window"] == "5m"
    assert body["targets"][0]["tolerance"] == 0.1


def test_schema_is_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["policy", "schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Policy"


def test_db_upgrade_and_status_on_embedded_default(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert (data_dir / "empire.db").exists()
    assert main(["db", "status"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_unreachable_database_is_one_line_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMPIRE_DATABASE_URL", "postgresql://empire:pw@127.0.0.1:1/empire")
    assert main(["db", "upgrade"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreachable" in err and ":pw@" not in err


def test_log_lines_and_tracebacks_show_urls_masked() -> None:
    """The CLI's log handler masks every line, traceback included: a last line of defence for
    a URL with a password in a library's message or an exception's text."""
    script = (
        "import logging; from empire.cli import main; main(['version']); log = logging.getLogger('t')\n"
        "log.error('peer %s down', 'http://u:LogPw1@h:9090')\n"
        "try:\n    raise OSError('cannot reach redis://:LogPw2@r:6379/0')\n"
        "except OSError:\n    log.exception('failed')\n"
    )
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    assert "peer http://u:***@h:9090 down" in err and "redis://:***@r:6379/0" in err and "Traceback" in err
    assert "LogPw" not in err


def test_missing_file_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["policy", "show", str(tmp_path / "nope.yaml")]) == 2
    assert capsys.readouterr().err == f"empire: error: {tmp_path / 'nope.yaml'}: no such policy file\n"


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "empire.cli", "version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("empire ")


def test_every_command_and_subcommand_help_has_examples() -> None:
    """The README promises `--help` with examples on every command: walk the whole parser tree."""
    import argparse

    from empire.cli import build_parser

    def walk(parser: argparse.ArgumentParser, path: str):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from walk(child, f"{path} {name}")

    missing = [path for path, p in walk(build_parser(), "empire") if "examples:" not in p.format_help()]
    assert missing == []


@pytest.mark.parametrize(
    ("var", "value"), [("EMPIRE_REDIS_URL", "garbage:hunter2"), ("EMPIRE_PROMETHEUS__URL", "notaurl")]
)
def test_run_with_a_malformed_peer_url_exits_2_before_starting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], var: str, value: str
) -> None:
    """Not a daemon that logs "leader election failed" every tick and `--once` exiting 0."""
    monkeypatch.setenv(var, value)
    monkeypatch.setenv("EMPIRE_HTTP__PORT", "0")
    assert main(["run", "--once"]) == 2
    err = capsys.readouterr().err
    assert f"{var}: not a URL (no scheme://); valid forms: " in err
    assert "Traceback" not in err and "hunter2" not in err


def test_bad_setting_is_one_line_per_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EMPIRE_HTTP__PORT", "abc")
    assert main(["config", "show"]) == 2
    assert capsys.readouterr().err == (
        "empire: error: invalid settings: EMPIRE_HTTP__PORT: Input should be a valid integer, "
        "unable to parse string as an integer\n"
    )
    monkeypatch.setenv("EMPIRE_REDIS_URL", "garbage")
    assert main(["config", "show"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("empire: error: invalid settings: EMPIRE_") for line in lines)


def test_a_policy_with_several_problems_prints_each_as_an_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop: {intervall: 5s}\ntargets:\n  - name: api\n    workload: {name: api}\n    max_replicas: -1\n")
    assert main(["policy", "show", str(bad)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 2 and all(line.startswith(f"empire: error: {bad}:") for line in lines)


def test_sigusr1_dumps_every_threads_stack_and_the_process_goes_on(capfd: pytest.CaptureFixture[str]) -> None:
    """`kill -USR1 <pid>` on `empire run` shows where a hung daemon is stuck."""
    import faulthandler
    import os
    import signal

    from empire.cli.run import _dump_stacks_on_sigusr1

    _dump_stacks_on_sigusr1()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        err = capfd.readouterr().err
    finally:
        faulthandler.unregister(signal.SIGUSR1)
    assert "most recent call first" in err and "test_sigusr1_dumps_every_threads_stack" in err


def test_an_argument_that_is_not_utf8_is_one_line(capsys) -> None:
    """`empire content show $'\\xff'` reached SQLite as a lone surrogate: a UnicodeEncodeError traceback."""
    assert main(["content", "show", "\udcff"]) == 2
    assert capsys.readouterr().err == "empire: error: argument 3 is not valid UTF-8 text\n"


def test_db_upgrade_to_an_empty_revision_is_one_line(capsys) -> None:
    """Found by the CLI property test: alembic answered `--revision ''` with a bare AssertionError."""
    assert main(["db", "upgrade", "--revision", " "]) == 2
    assert capsys.readouterr().err == "empire: error: --revision: empty; give a revision id or 'head' (the default)\n"
