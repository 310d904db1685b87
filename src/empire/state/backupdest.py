"""Where `empire db backup --to` writes and `empire db restore` reads: a local path or an S3 URL.

`open_location("s3://bucket/prefix/")` talks to S3 (or MinIO: `AWS_ENDPOINT_URL`) with boto3's
usual credential chain (environment, `~/.aws`, the pod's IAM role), so no credential passes
through empire's settings; anything else is a local directory (or, for a name ending in an
artifact suffix, a file path in that directory). The artifact is written before its manifest, so
a reader that finds a manifest finds a complete artifact.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import anyio.to_thread

from empire.errors import ConfigError, NotFoundError, PermanentError, TemporaryError

__all__ = ["LocalLocation", "S3Location", "open_location", "split_artifact"]


def split_artifact(text: str) -> tuple[str, str | None]:
    """`dir/empire-X.sqlite3` -> ("dir/", "empire-X.sqlite3"); a manifest names its artifact;
    a directory (or prefix) -> (text, None)."""
    from empire.agent.backup.manifest import MANIFEST_SUFFIX, SUFFIX

    if text.endswith(MANIFEST_SUFFIX):
        text = text[: -len(MANIFEST_SUFFIX)]
    base = text.rstrip("/").rsplit("/", 1)
    if len(base) == 2 and base[1].endswith(tuple(SUFFIX.values())):
        return base[0] + "/", base[1]
    if len(base) == 1 and base[0].endswith(tuple(SUFFIX.values())):
        return "./", base[0]
    return text, None


@dataclass
class LocalLocation:
    directory: Path

    def describe(self, name: str = "") -> str:
        return str(self.directory / name) if name else str(self.directory)

    async def put_file(self, name: str, path: Path) -> None:
        await anyio.to_thread.run_sync(self._copy, path, self.directory / name)

    async def put_text(self, name: str, text: str) -> None:
        partial = self.directory / f".{name}.partial"
        try:
            partial.write_text(text)
            os.chmod(partial, 0o600)
            os.replace(partial, self.directory / name)
        except OSError as exc:
            raise TemporaryError(f"cannot write {self.directory / name}: {exc.strerror or exc}") from None

    async def get_file(self, name: str, dest: Path) -> Path:
        src = self.directory / name
        if not src.is_file():
            raise NotFoundError(f"no backup file {src}")
        return src  # read in place: no copy needed

    async def get_text(self, name: str) -> str:
        from empire.boundedio import read_bounded

        path = self.directory / name
        if not path.is_file():
            raise NotFoundError(f"no backup manifest {path}")
        return read_bounded(path, 1024 * 1024, "backup manifest").decode(errors="replace")

    @staticmethod
    def _copy(src: Path, dst: Path) -> None:
        import shutil

        if src.resolve() == dst.resolve():
            return
        partial = dst.with_name(f".{dst.name}.partial")
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, partial)
            os.chmod(partial, 0o600)
            os.replace(partial, dst)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TemporaryError(f"cannot write {dst}: {exc.strerror or exc}") from None


@dataclass
class S3Location:
    bucket: str
    prefix: str
    client: Any = None

    def describe(self, name: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{name}"

    def _s3(self) -> Any:
        if self.client is None:
            import boto3

            self.client = boto3.client("s3")
        return self.client

    async def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))
        except NoCredentialsError:
            raise ConfigError(f"{what}: no S3 credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, "
                              "or the pod's role)") from None  # fmt: skip
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise NotFoundError(f"{what}: not found") from None
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            cls = TemporaryError if status >= 500 or status == 429 else PermanentError
            raise cls(f"{what}: {code} {exc.response.get('Error', {}).get('Message', '')}".strip()) from None
        except (BotoCoreError, OSError) as exc:
            raise TemporaryError(f"{what}: {exc}") from None

    async def put_file(self, name: str, path: Path) -> None:
        await self._call(f"upload to {self.describe(name)}", self._s3().upload_file, str(path), self.bucket,
                         self.prefix + name)  # fmt: skip

    async def put_text(self, name: str, text: str) -> None:
        await self._call(f"upload to {self.describe(name)}", self._s3().put_object, Bucket=self.bucket,
                         Key=self.prefix + name, Body=text.encode())  # fmt: skip

    async def get_file(self, name: str, dest: Path) -> Path:
        await self._call(f"download {self.describe(name)}", self._s3().download_file, self.bucket,
                         self.prefix + name, str(dest))  # fmt: skip
        return dest

    async def get_text(self, name: str) -> str:
        got = await self._call(f"download {self.describe(name)}", self._s3().get_object, Bucket=self.bucket,
                               Key=self.prefix + name)  # fmt: skip
        body = await anyio.to_thread.run_sync(got["Body"].read, 1024 * 1024 + 1)
        if len(body) > 1024 * 1024:
            raise PermanentError(f"{self.describe(name)}: larger than a manifest can be (1 MiB)")
        return bytes(body).decode(errors="replace")


def open_location(text: str) -> LocalLocation | S3Location:
    """A directory (local path, or `s3://bucket/prefix/`) to keep backups in."""
    if text.startswith("s3://"):
        u = urlparse(text)
        if not u.netloc:
            raise ConfigError(f"{text[:80]}: an S3 URL names a bucket: s3://BUCKET/[PREFIX/]")
        prefix = u.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return S3Location(u.netloc, prefix)
    if "://" in text:
        raise ConfigError(f"{text[:80]}: use a local path or s3://BUCKET/PREFIX/")
    return LocalLocation(Path(text))


def scratch_dir(near: Path | None = None) -> tempfile.TemporaryDirectory[str]:
    """A private temporary directory (on the same file system as `near` when given, so the final
    rename is atomic)."""
    if near is not None:
        near.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".empire-backup-", dir=near)
