"""What several command groups share: running a coroutine against the state database, and tables.

Commands that read or change state (`jobs`, `alerts`, `silence`, `explain`, `pools hold`, `db`)
open the database from the settings, run, and close it, so a connection never outlives the command
and an unreachable database is the same one-line, exit-3 error everywhere. A command that only
reads passes `readonly=True`: it never creates or migrates a database (a missing one, or one behind
the newest schema, is a one-line exit-2 error saying to run `empire db upgrade`), and its
connection refuses writes. `alerts` and `silence`
print their tables and times the same way (`print_table`, `utc_time`).

Input and output are checked the same way by every command: numeric options are argparse types
with bounds (`count`, `number`: a 25-digit id or `nan` is a usage error, never an overflow in
SQLite or numpy later), an output file is checked before the work (`check_output_path`: format,
directory) and written through `replaced_when_done` (a temporary file renamed into place), so a
command that fails leaves no partial output.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import anyio

from empire.errors import ConfigError

if TYPE_CHECKING:
    from empire.state.database import Database

__all__ = [
    "MAX_ID",
    "check_output_path",
    "count",
    "number",
    "print_table",
    "replaced_when_done",
    "utc_time",
    "with_database",
]

MAX_ID = 2**63 - 1
"""The largest row id a database column holds (a 25-digit id was an OverflowError in SQLite)."""

T = TypeVar("T")


def with_database(
    fn: Callable[[Database], Awaitable[T]],
    *,
    url: str | None = None,
    migrate: bool = True,
    readonly: bool = False,
    current: bool = True,
) -> T:
    """`fn(db)` on the database of the settings (or `url`), migrated to the newest schema unless
    `migrate` is False (`empire db` inspects or migrates it itself). `readonly`: see the module
    docstring; `current=False` lets `empire db status|verify` look at a database of any revision."""
    from empire.config.settings import load_settings
    from empire.state.database import Database

    target = url or load_settings().database_url_value

    async def go() -> T:
        if readonly:
            db = await Database.open_readonly(target, current=current)
        else:
            db = await Database.open(target, migrate=migrate)
        try:
            return await fn(db)
        finally:
            await db.close()

    return anyio.run(go)


def utc_time(dt: datetime | None) -> str:
    """`2026-03-01 18:00:00Z` (the stored UTC time), or `-` when there is none."""
    return dt.strftime("%Y-%m-%d %H:%M:%SZ") if dt else "-"


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows (the first is the header) in columns as wide as their widest cell, two spaces
    apart; the last column is left unpadded (free text: summaries, comments)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])


def check_output_path(path: str | Path, option: str, suffixes: Collection[str] = ()) -> Path:
    """Refuse, before any work, an output the command could only fail to write at the end (after a
    long run): a suffix not in `suffixes` (lower case, no dot; empty: any), a path that is a
    directory, or a parent that is a file or not writable. Creates nothing."""
    out = Path(path)
    suffix = out.suffix.lower().lstrip(".")
    if suffixes and suffix not in suffixes:
        raise ConfigError(f"{option} {out}: unsupported format {suffix or '(no suffix)'!r}; "
                          f"use one of: {', '.join(sorted(suffixes))}")  # fmt: skip
    if out.is_dir():
        raise ConfigError(f"{option} {out}: is a directory; give a file name")
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{option} {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"{option} {out}: not writable")
    return out


def count(low: int = 1, high: int = MAX_ID) -> Callable[[str], int]:
    """An argparse `type` for a whole number in `low..high` (a limit, an id, a count): anything
    else is argparse's one-line usage error (exit 2), never an overflow deeper down."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text[:40]} is not between {low:,} and {high:,}")
        return value

    return parse


def number(low: float = -math.inf, high: float = math.inf, *, above: float | None = None) -> Callable[[str], float]:
    """An argparse `type` for a finite number in `low..high` (and greater than `above`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a finite number")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{text[:40]} must be greater than {above:g}")
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text[:40]} is not between {low:g} and {high:g}")
        return value

    return parse


@contextmanager
def replaced_when_done(path: str | Path, option: str) -> Iterator[Path]:
    """A temporary file beside `path` to write to; renamed onto `path` when the block ends
    without an error, deleted otherwise: a reader never sees a half-written output. An OS error
    (disk full, no permission) is a one-line `ConfigError` naming `option`."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{option} {out}: cannot create {out.parent}: {exc.strerror or exc}") from None
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        yield partial
        os.replace(partial, out)
    except OSError as exc:
        raise ConfigError(f"{option} {out}: cannot write: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
