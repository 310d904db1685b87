"""Local filesystem backend: one directory per tier (the embedded default).

Durability is explicit because a move deletes the source right after: a copy is written to
`<location>.partial`, fsynced, renamed over the final name, and the directory is fsynced, so after
`copy` returns the bytes and the name survive a power cut. Blocking file I/O runs in worker
threads; a copy runs in one thread (kernel `copy_file_range` where available) and reports
progress back to the event loop after each chunk, which is where the mover's bytes/s budget waits.
Free space is checked before a copy starts, so a full target fails fast instead of half-way.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import anyio.to_thread
from anyio import from_thread

from empire.agent.tiering.backends.base import (
    CHUNK,
    PARTIAL_SUFFIX,
    classify_os_error,
    location_for,
    sha256_hex,
    validate_location,
)
from empire.errors import ConfigError, TemporaryError

__all__ = ["LocalBackend"]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend:
    """`roots` maps each tier name to its directory (created on first use)."""

    def __init__(self, roots: dict[str, Path], *, chunk_size: int = CHUNK, check_free_space: bool = True) -> None:
        if not roots:
            raise ConfigError("local storage backend needs at least one tier root")
        self.roots = {name: Path(p) for name, p in roots.items()}
        self.tier_names = tuple(self.roots)
        self.chunk_size = chunk_size
        self.check_free_space = check_free_space

    def __repr__(self) -> str:
        return f"LocalBackend({', '.join(f'{k}={v}' for k, v in self.roots.items())})"

    def location_for(self, object_id: str) -> str:
        return location_for(object_id)

    def path(self, tier: str, location: str) -> Path:
        try:
            root = self.roots[tier]
        except KeyError:
            raise ConfigError(f"unknown tier {tier!r} (valid: {', '.join(self.roots)})") from None
        return root / validate_location(location)

    # ------------------------------------------------------------------ writing
    def _write_durably(self, dst: Path, fill: Callable[[int], None]) -> None:
        """Create `dst.partial`, let `fill(fd)` write it, fsync, rename over `dst`, fsync the directory."""
        dst.parent.mkdir(parents=True, exist_ok=True)
        partial = dst.with_name(dst.name + PARTIAL_SUFFIX)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            try:
                fill(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, dst)
            _fsync_dir(dst.parent)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    async def put(self, tier: str, location: str, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        dst = self.path(tier, location)
        partial = dst.with_name(dst.name + PARTIAL_SUFFIX)
        digest = hashlib.sha256()
        size = 0

        def open_partial() -> int:
            dst.parent.mkdir(parents=True, exist_ok=True)
            return os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

        def write_all(fd: int, block: bytes) -> None:
            view = memoryview(block)
            while view:
                view = view[os.write(fd, view) :]

        def seal(fd: int) -> None:
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, dst)
            _fsync_dir(dst.parent)

        try:
            fd = await anyio.to_thread.run_sync(open_partial)
            try:
                async for block in chunks:
                    if block:
                        await anyio.to_thread.run_sync(write_all, fd, block)
                        digest.update(block)
                        size += len(block)
            except BaseException:
                os.close(fd)
                raise
            await anyio.to_thread.run_sync(seal, fd)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise classify_os_error(exc, f"write {tier}/{location}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return size, sha256_hex(digest)

    async def copy(
        self,
        src_tier: str,
        src_location: str,
        dst_tier: str,
        dst_location: str,
        progress: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        src, dst = self.path(src_tier, src_location), self.path(dst_tier, dst_location)
        chunk = self.chunk_size

        def run() -> int:
            size = os.stat(src).st_size
            if self.check_free_space:
                dst.parent.mkdir(parents=True, exist_ok=True)
                free = shutil.disk_usage(dst.parent).free
                if free < size:
                    raise TemporaryError(
                        f"copy to {dst_tier}: no space left on device ({free} bytes free, {size} needed)"
                    )
            copied = 0

            def fill(fd_out: int) -> None:
                nonlocal copied
                with open(src, "rb") as fin:
                    fd_in = fin.fileno()
                    while True:
                        n = _copy_chunk(fd_in, fd_out, chunk)
                        if n == 0:
                            break
                        copied += n
                        if progress is not None:
                            from_thread.run(progress, n)

            self._write_durably(dst, fill)
            return copied

        try:
            return await anyio.to_thread.run_sync(run)
        except OSError as exc:
            raise classify_os_error(exc, f"copy {src_tier}/{src_location} -> {dst_tier}/{dst_location}") from exc

    # ------------------------------------------------------------------ reading
    async def read(self, tier: str, location: str) -> AsyncIterator[bytes]:
        path = self.path(tier, location)
        try:
            f = await anyio.to_thread.run_sync(open, path, "rb")
        except OSError as exc:
            raise classify_os_error(exc, f"read {tier}/{location}") from exc
        try:
            while block := await anyio.to_thread.run_sync(f.read, self.chunk_size):
                yield block
        finally:
            f.close()

    async def checksum(self, tier: str, location: str) -> str:
        path = self.path(tier, location)

        def run() -> str:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while block := f.read(max(self.chunk_size, CHUNK)):
                    digest.update(block)
            return sha256_hex(digest)

        try:
            return await anyio.to_thread.run_sync(run)
        except OSError as exc:
            raise classify_os_error(exc, f"read {tier}/{location}") from exc

    async def exists(self, tier: str, location: str) -> bool:
        return await anyio.to_thread.run_sync(self.path(tier, location).is_file)

    async def delete(self, tier: str, location: str) -> bool:
        path = self.path(tier, location)

        def run() -> bool:
            path.with_name(path.name + PARTIAL_SUFFIX).unlink(missing_ok=True)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            _fsync_dir(path.parent)
            return True

        try:
            return await anyio.to_thread.run_sync(run)
        except OSError as exc:
            raise classify_os_error(exc, f"delete {tier}/{location}") from exc

    async def list(self, tier: str) -> list[str]:
        root = self.roots[tier]

        def run() -> list[str]:
            if not root.is_dir():
                return []
            out = []
            for dirpath, _dirs, files in os.walk(root):
                for name in files:
                    if not name.endswith(PARTIAL_SUFFIX):
                        out.append(str((Path(dirpath) / name).relative_to(root)))
            return sorted(out)

        return await anyio.to_thread.run_sync(run)

    async def aclose(self) -> None:
        return None


def _copy_chunk(fd_in: int, fd_out: int, size: int) -> int:
    """Copy up to `size` bytes at the current offsets; 0 at end of file. Kernel copy when possible."""
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is not None:
        try:
            return copy_file_range(fd_in, fd_out, size)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # fall back
                raise
    block = os.read(fd_in, size)
    view = memoryview(block)
    while view:
        view = view[os.write(fd_out, view) :]
    return len(block)
