"""Reading input files with a size limit: the one way empire reads a file a user names.

Why: a file name is input like any other. `EMPIRE_POLICY_FILE=/dev/zero` once grew the agent to
11.6 GB while it froze; a CSV of the wrong kind, a FIFO or a runaway export does the same to a
command. Every file empire reads on a user's say-so (policy, CSV series and inventory imports,
settings, kubeconfig, secret files) goes through `read_bounded` (the whole file, for YAML and
small files) or `open_bounded_text` (a stream, for CSV: the caller keeps only what it needs), with
a limit per kind of file. Past the limit the read stops and a one-line `InputTooLarge` names the
file and the limit, so a CLI command exits 2 and the daemon rejects a reload. A `.gz` file is
limited by its decompressed size (what memory and time depend on). Text is UTF-8; a byte-order
mark (as spreadsheet exports write) is dropped, so it never becomes part of a column name.
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from empire.errors import ConfigError

__all__ = [
    "MAX_CSV_BYTES",
    "MAX_LINE_CHARS",
    "MAX_POLICY_BYTES",
    "MAX_SMALL_FILE_BYTES",
    "MAX_YAML_BYTES",
    "InputTooLarge",
    "bounded_lines",
    "format_limit",
    "open_bounded_text",
    "read_bounded",
    "read_bounded_text",
]

MAX_POLICY_BYTES = 1 << 20
"""A policy file (the shipped example is 9 KB; an EmpireConfig is capped near this by etcd too)."""
MAX_YAML_BYTES = 4 << 20
"""Settings files and kubeconfigs (inline certificates make these larger than a policy)."""
MAX_SMALL_FILE_BYTES = 64 << 10
"""Secrets and tokens read from files."""
MAX_CSV_BYTES = 512 << 20
"""A CSV series or inventory import, decompressed (a year of per-second samples is ~1 GB: resample first)."""

MAX_LINE_CHARS = 1 << 20
"""A line of a CSV file: without it, a file with no newline (`/dev/zero`) is one 512 MB line."""

_CHUNK = 1 << 16


class InputTooLarge(ConfigError):
    """A file is larger than the limit for its kind: nothing of it is used."""


def format_limit(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _too_large(where: str, limit: int, what: str) -> InputTooLarge:
    return InputTooLarge(f"{where}: larger than {format_limit(limit)} (the {what} limit); nothing of it was used")


def _describe(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class _Limited(io.RawIOBase):
    """A binary stream that raises `InputTooLarge` once more than `limit` bytes came through."""

    def __init__(self, inner: BinaryIO, limit: int, where: str, what: str, *, owned: bool = True) -> None:
        self.inner, self.limit, self.where, self.what, self.count = inner, limit, where, what, 0
        self.owned = owned  # close `inner` with this stream (not standard input)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self.limit + 1 - self.count)
        try:
            data = self.inner.read(max(want, 1))
        except (OSError, EOFError, zlib.error) as exc:  # a read error, a truncated or corrupt .gz
            raise ConfigError(f"{self.where}: cannot read {self.what}: {exc}") from None
        self.count += len(data)
        if self.count > self.limit:
            raise _too_large(self.where, self.limit, self.what)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            if self.owned:
                self.inner.close()
        finally:
            super().close()


class _Encoded:
    """A text stream read as UTF-8 bytes (standard input replaced by a text buffer, as in tests)."""

    def __init__(self, text: TextIO) -> None:
        self.text = text

    def read(self, n: int) -> bytes:
        return self.text.read(n).encode("utf-8", "surrogateescape")

    def close(self) -> None:
        pass


def _open_binary(path: str | Path, limit: int, what: str) -> _Limited:
    """`path` (or `-`, standard input) opened for reading, decompressed when it ends in `.gz`."""
    where = str(path)
    if where == "-":
        stdin = getattr(sys.stdin, "buffer", None) or _Encoded(sys.stdin)
        return _Limited(stdin, limit, "<stdin>", what, owned=False)
    p = Path(path)
    try:
        fh: BinaryIO = p.open("rb")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, expected a {what}") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read {what}: {_describe(exc)}") from None
    if p.suffix == ".gz":
        fh = gzip.GzipFile(fileobj=fh, mode="rb")  # type: ignore[assignment]
    return _Limited(fh, limit, where, what)


def read_bounded(path: str | Path, limit: int, what: str) -> bytes:
    """The whole content of `path` (at most `limit` bytes, else `InputTooLarge`).

    `what` names the kind of file for messages ("policy file"). A missing or unreadable file is
    a one-line `ConfigError` too."""
    with _open_binary(path, limit, what) as fh:
        chunks = []
        while block := fh.read(_CHUNK):
            chunks.append(block)
    return b"".join(chunks)


def read_bounded_text(path: str | Path, limit: int, what: str) -> str:
    """`read_bounded` decoded as UTF-8 (a byte-order mark is dropped)."""
    data = read_bounded(path, limit, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: cannot read {what}: not UTF-8 text (byte {exc.start})") from None


def open_bounded_text(path: str | Path, limit: int, what: str) -> TextIO:
    """`path` as a UTF-8 text stream for the `csv` module (`newline=""`, a byte-order mark
    dropped) that raises `InputTooLarge` once more than `limit` bytes were read, and a one-line
    `ConfigError` for a read or decompression error; bad UTF-8 surfaces as `UnicodeDecodeError`."""
    raw = _open_binary(path, limit, what)
    return io.TextIOWrapper(io.BufferedReader(raw, _CHUNK), encoding="utf-8-sig", newline="")


def bounded_lines(fh: TextIO, where: str, limit: int = MAX_LINE_CHARS) -> Iterator[str]:
    """The lines of `fh` (for `csv.reader`), each at most `limit` characters, else `InputTooLarge`."""
    n = 0
    while line := fh.readline(limit + 1):
        n += 1
        if len(line) > limit:
            raise InputTooLarge(f"{where}: line {n} is longer than {limit:,} characters; nothing of it was used")
        yield line
