"""Every `empire` command, driven with generated garbage: no traceback, a documented exit code,
nothing written half-way (issue 13).

The commands come from the argparse tree (`build_parser()`), so a new command is covered the day
it is added. For each one hypothesis builds argument lists from its own options (every choice,
flag and value slot) filled with values that broke commands before: huge and non-finite numbers,
25-digit ids, ten-thousand-year durations, far dates, and paths to generated files (CSV series
and inventory rows with byte-order marks, duplicates, unsorted and extreme timestamps; YAML
with deep nesting and random shapes; gzip, whole, cut short or corrupt; `/dev/zero`; directories;
missing files). Each call is an in-process `main([...])` against an SQLite data directory of its
own, and must

* return 0, 1, 2 or 3 (the README's codes) or, for argparse, exit 0 (`--help`) or 2 (usage);
* never raise anything else, and never print a traceback;
* when it fails (2 or 3), leave the working directory exactly as it was: no partial output.

Commands that run until stopped (`run`, `operator run`, `pools run`) are only parsed. Examples
are derandomized (the same ones every run, so CI is reproducible); set `EMPIRE_FUZZ_EXAMPLES=200`
to search further locally.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from empire.cli import build_parser, main

EXAMPLES = int(os.environ.get("EMPIRE_FUZZ_EXAMPLES", "12"))
PARSE_ONLY = {("run",), ("operator", "run"), ("pools", "run")}  # run until stopped
EXIT_CODES = {0, 1, 2, 3}


def leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every runnable command: (words, its parser)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from leaves(child, (*path, name))


COMMANDS = dict(leaves(build_parser()))

SPECIAL = [
    "", " ", "-", "0", "1", "2", "-1", "7", "0.5", "nan", "inf", "-inf", "1e309", "9" * 25, "-" + "9" * 25,
    "1000000000d", "3651d", "0s", "90s", "2h", "1ms", "2026-05-01T10:00:00Z", "9999-12-31T23:59Z",
    "0001-01-01T00:00+01:00", "yesterday", 'alertname="x"', 'alertname=~".*"', "track-a", "nova", "sim/a",
    "reactive,empire", "\u202e", "é", "x" * 300,
]  # fmt: skip
FILES = ["series.csv", "series.csv.gz", "inventory.csv", "policy.yaml", "/dev/zero", "missing.csv", "adir",
         "out/scores", "out/x.png", "out/x.txt", "out.json"]  # fmt: skip

BASE = 1_700_000_000  # 2023-11-14
stamps = st.one_of(
    st.integers(0, 2000).map(lambda m: BASE + 60 * m).map(str),
    st.integers(0, 2000).map(lambda m: f"2024-03-01T{m // 60 % 24:02d}:{m % 60:02d}:00Z"),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1e12", "-1e12", "nan", "", "yesterday"]),
)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["", "nan", "NA", "abc", "1e999", "-0"]),
)


def series_csv(draw: st.DrawFn) -> bytes:
    columns = draw(st.lists(st.sampled_from(["timestamp", "value", "status", "requests", "x"]), min_size=1,
                            max_size=4, unique=True))  # fmt: skip
    lines = [",".join(columns)]
    for _ in range(draw(st.integers(0, 25))):
        cells = {"timestamp": draw(stamps), "status": draw(st.sampled_from(["ok", "outage", ""]))}
        lines.append(",".join(cells.get(c) or draw(numbers) for c in columns))
    if draw(st.booleans()):  # a file in time order, to get past the reader into the commands
        lines[1:] = sorted(set(lines[1:]))
    text = "\n".join(lines) + "\n"
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode()


def inventory_csv(draw: st.DrawFn) -> bytes:
    columns = draw(st.lists(st.sampled_from(["id", "revenue", "accesses", "at", "plays"]), min_size=1, max_size=4,
                            unique=True))  # fmt: skip
    lines = [",".join(columns)]
    for _ in range(draw(st.integers(0, 5))):
        cell = {"id": st.sampled_from(["track-a", "nope", ""]), "at": stamps}
        lines.append(",".join(draw(cell.get(c, numbers)) for c in columns))
    return ("\n".join(lines) + "\n").encode()


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.floats(),
                         st.sampled_from(["15s", "0s", "1000000000d", ".inf", "api", "x" * 100]))  # fmt: skip
yaml_keys = st.sampled_from(["loop", "interval", "targets", "name", "storage", "tiers", "alerting", "personas",
                             "providers", "budget", "max_replicas", "signals", "bogus"])  # fmt: skip
yaml_docs = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                st.dictionaries(yaml_keys, inner, max_size=4)),
                         max_leaves=20)  # fmt: skip


def policy_yaml(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["shape", "deep", "valid", "garbage"]))
    if kind == "deep":
        return ("loop: " + "[" * 100 + "]" * 100 + "\n").encode()  # past the 64-level limit
    if kind == "valid":
        return b"loop: {interval: 15s, dry_run: true}\n"
    if kind == "garbage":
        return draw(st.binary(max_size=200))
    return yaml.safe_dump(draw(yaml_docs)).encode()


@st.composite
def workspace(draw: st.DrawFn) -> dict[str, bytes]:
    """The generated files of one example, by name."""
    csv = series_csv(draw)
    packed = gzip.compress(series_csv(draw))
    cut = draw(st.sampled_from([len(packed), len(packed) // 2, 30]))  # whole, cut short, or flipped
    packed = packed[:cut] if cut != 30 else packed[:20] + bytes(b ^ 0x55 for b in packed[20:])
    return {
        "series.csv": csv,
        "series.csv.gz": packed,
        "inventory.csv": inventory_csv(draw),
        "policy.yaml": policy_yaml(draw),
        "stdin": inventory_csv(draw),
    }


def values() -> st.SearchStrategy[str]:
    text = st.text(st.characters(exclude_characters="\x00"), max_size=12)  # no NUL: argv cannot hold one
    return st.one_of(st.sampled_from(FILES), st.sampled_from(SPECIAL), text)


def nargs_count(action: argparse.Action) -> st.SearchStrategy[int]:
    if action.nargs in ("+",):
        return st.integers(1, 3)
    if action.nargs in ("*",):
        return st.integers(0, 3)
    if action.nargs == "?" or action.nargs is None:
        return st.just(1)
    if isinstance(action.nargs, int):
        return st.just(action.nargs)
    return st.just(1)


@st.composite
def argv_for(draw: st.DrawFn, parser: argparse.ArgumentParser) -> list[str]:
    """Arguments from the parser's own actions: every positional (optional ones too, so that
    `backtest` never falls back to its 62-day default trace), any subset of the options."""
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            if draw(st.integers(0, 40)) == 0:
                out.append("--help")
            continue
        if action.option_strings and not draw(st.booleans()):
            continue

        def one(action: argparse.Action = action) -> str:
            if action.choices is not None and draw(st.integers(0, 5)) > 0:
                return str(draw(st.sampled_from(list(action.choices))))
            return draw(values())

        if action.option_strings:
            flag = draw(st.sampled_from(action.option_strings))
            if action.nargs == 0:
                out.append(flag)
                continue
            out += [flag, *(one() for _ in range(draw(nargs_count(action))))]
        else:
            out += [one() for _ in range(draw(nargs_count(action)))]
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
        for p in root.rglob("*")
    }


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="empire-fuzz-") as d:
        yield Path(d)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path) -> None:
    for var in list(os.environ):
        if var.startswith("EMPIRE_") or var == "KUBECONFIG":
            monkeypatch.delenv(var)
    monkeypatch.setenv("EMPIRE_DATA_DIR", str(data_dir / "data"))
    monkeypatch.setenv("EMPIRE_KUBERNETES__MODE", "disabled")


@pytest.mark.parametrize("words", sorted(COMMANDS), ids=" ".join)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate],  # report a failing example as found (shrinking takes minutes)
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(files=workspace(), data=st.data())
def test_no_traceback_a_documented_exit_code_and_nothing_half_written(
    clean_env: None, data_dir: Path, words: tuple[str, ...], files: dict[str, bytes], data: st.DataObject
) -> None:
    parser = COMMANDS[words]
    argv = [*words, *data.draw(argv_for(parser), label="arguments")]
    with tempfile.TemporaryDirectory(dir=data_dir) as d:
        work = Path(d)
        for name, content in files.items():
            (work / name).write_bytes(content)
        (work / "adir").mkdir()
        before = snapshot(work)
        stdout, stderr = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(work)
        try:
            with (
                contextlib.redirect_stdout(stdout),
                contextlib.redirect_stderr(stderr),
                pytest.MonkeyPatch.context() as mp,
            ):
                mp.setattr("sys.stdin", io.StringIO(files["stdin"].decode()))
                if words in PARSE_ONLY:
                    build_parser().parse_args(argv)
                    code = 0
                else:
                    code = main(argv)
        except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
            code = exc.code
            assert code in (0, 2), f"argparse exit {code!r} for {argv!r}"
        finally:
            os.chdir(cwd)
        err = stderr.getvalue()
        event(f"exit {code}" + (" (usage)" if "usage:" in err else ""))
        assert code in EXIT_CODES, f"exit {code!r} for {argv!r}"
        assert "Traceback" not in err, f"{argv!r}:\n{err}"
        if code in (2, 3):
            assert snapshot(work) == before, f"{argv!r} failed (exit {code}) but changed files:\n{err}"
