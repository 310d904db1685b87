"""S3-compatible backend: each tier is a key prefix `<prefix><tier>/` stored in the tier's storage class.

Why distinct prefixes rather than changing an object's storage class in place: a move must be a
copy followed by a delete so that the generic crash-safe protocol (copy, verify, switch, delete)
applies unchanged, and so a half-done move is visible as two keys that recovery can resolve.
Copies are server-side (`CopyObject`, multipart above 5 GB via boto3's managed transfer), so bytes
do not pass through the agent; verification reads the copy back and hashes it. Tiers must use
storage classes that can be read without a restore (STANDARD, STANDARD_IA, ONEZONE_IA,
INTELLIGENT_TIERING, GLACIER_IR): GLACIER and DEEP_ARCHIVE objects cannot be verified after a copy.

boto3 is synchronous; every call runs in a worker thread. Retries of throttling and 5xx answers
happen inside botocore (standard retry mode); what still fails is classified Temporary/Permanent.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import anyio.to_thread

from empire.agent.tiering.backends.base import CHUNK, location_for, sha256_hex, validate_location
from empire.config.secrets import SecretReader, resolve_secret_value
from empire.errors import ConfigError, NotFoundError, PermanentError, TemporaryError
from empire.policies.storage import S3Backend as S3Settings
from empire.policies.storage import StoragePolicy

__all__ = ["READABLE_STORAGE_CLASSES", "S3Backend"]

READABLE_STORAGE_CLASSES = ("STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
                            "REDUCED_REDUNDANCY", "EXPRESS_ONEZONE")  # fmt: skip
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_TEMPORARY = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
              "InternalError", "RequestTimeTooSkewed"}  # fmt: skip


def _classify(exc: Exception, what: str) -> Exception:
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        NoCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = f"{what}: {code} {err.get('Message', '')}".strip()
        if code in _NOT_FOUND or status == 404:
            return NotFoundError(message)
        if code in _TEMPORARY or status >= 500 or status == 429:
            return TemporaryError(message)
        return PermanentError(message)
    if isinstance(exc, NoCredentialsError):
        return ConfigError(f"{what}: no S3 credentials (set storage.s3.access_key_id/secret_access_key)")
    if isinstance(exc, BotoConnectionError | HTTPClientError | OSError):
        return TemporaryError(f"{what}: {exc}")
    return PermanentError(f"{what}: {exc}")


class S3Backend:
    def __init__(
        self,
        settings: S3Settings,
        storage_classes: dict[str, str | None],
        *,
        client: Any = None,
        secrets: SecretReader | None = None,
    ) -> None:
        for tier, sc in storage_classes.items():
            if sc is not None and sc not in READABLE_STORAGE_CLASSES:
                raise ConfigError(
                    f"tier {tier}: storage class {sc} cannot be read back without a restore; "
                    f"use one of {', '.join(READABLE_STORAGE_CLASSES)}"
                )
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.storage_classes = dict(storage_classes)
        self.tier_names = tuple(storage_classes)
        self._client = client
        self._secrets = secrets  # reads `secret:` references (the daemon's KubernetesSecretReader)

    @classmethod
    def from_policy(cls, policy: StoragePolicy, secrets: SecretReader | None = None) -> S3Backend:
        if policy.s3 is None:
            raise ConfigError("storage.backend is s3 but storage.s3 is missing")
        return cls(policy.s3, {t.name: t.storage_class for t in policy.tiers}, secrets=secrets)

    def __repr__(self) -> str:
        return f"S3Backend(bucket={self.bucket!r}, endpoint={self.settings.endpoint_url!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            s = self.settings
            kwargs: dict[str, Any] = {}
            if s.access_key_id is not None and s.secret_access_key is not None:
                kwargs["aws_access_key_id"] = resolve_secret_value(s.access_key_id, kubernetes=self._secrets)
                kwargs["aws_secret_access_key"] = resolve_secret_value(s.secret_access_key, kubernetes=self._secrets)
            config = Config(
                retries={"mode": "standard", "max_attempts": 4},
                s3={"addressing_style": s.addressing_style},
                connect_timeout=10,
                read_timeout=60,
            )
            self._client = boto3.session.Session().client(
                "s3", endpoint_url=s.endpoint_url, region_name=s.region, config=config, **kwargs
            )
        return self._client

    def location_for(self, object_id: str) -> str:
        return location_for(object_id)

    def key(self, tier: str, location: str) -> str:
        if tier not in self.storage_classes:
            raise ConfigError(f"unknown tier {tier!r} (valid: {', '.join(self.storage_classes)})")
        return f"{self.prefix}{tier}/{validate_location(location)}"

    def _extra(self, tier: str) -> dict[str, str]:
        sc = self.storage_classes[tier]
        return {"StorageClass": sc} if sc else {}

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await anyio.to_thread.run_sync(partial(fn, *args, **kwargs))
        except Exception as exc:
            if isinstance(exc, TemporaryError | PermanentError):
                raise
            raise _classify(exc, what) from exc

    async def put(self, tier: str, location: str, chunks: AsyncIterable[bytes]) -> tuple[int, str]:
        key = self.key(tier, location)
        digest = hashlib.sha256()
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=8 * CHUNK) as spool:
            async for block in chunks:
                spool.write(block)
                digest.update(block)
                size += len(block)
            spool.seek(0)
            await self._call(f"put {key}", self.client.upload_fileobj, spool, self.bucket, key,
                             ExtraArgs=self._extra(tier))  # fmt: skip
        return size, sha256_hex(digest)

    async def copy(
        self,
        src_tier: str,
        src_location: str,
        dst_tier: str,
        dst_location: str,
        progress: Callable[[int], Awaitable[None]] | None = None,
    ) -> int:
        src, dst = self.key(src_tier, src_location), self.key(dst_tier, dst_location)
        head = await self._call(f"head {src}", self.client.head_object, Bucket=self.bucket, Key=src)
        size = int(head["ContentLength"])
        if progress is not None:
            await progress(size)  # server-side copy: the budget is charged up front
        await self._call(f"copy {src} -> {dst}", self.client.copy, {"Bucket": self.bucket, "Key": src},
                         self.bucket, dst, ExtraArgs={**self._extra(dst_tier), "MetadataDirective": "COPY"})  # fmt: skip
        return size

    async def read(self, tier: str, location: str) -> AsyncIterator[bytes]:
        key = self.key(tier, location)
        resp = await self._call(f"get {key}", self.client.get_object, Bucket=self.bucket, Key=key)
        body = resp["Body"]
        try:
            while block := await self._call(f"get {key}", body.read, CHUNK):
                yield block
        finally:
            body.close()

    async def checksum(self, tier: str, location: str) -> str:
        digest = hashlib.sha256()
        async for block in self.read(tier, location):
            digest.update(block)
        return sha256_hex(digest)

    async def exists(self, tier: str, location: str) -> bool:
        key = self.key(tier, location)
        try:
            await self._call(f"head {key}", self.client.head_object, Bucket=self.bucket, Key=key)
        except NotFoundError:
            return False
        return True

    async def delete(self, tier: str, location: str) -> bool:
        existed = await self.exists(tier, location)
        key = self.key(tier, location)
        await self._call(f"delete {key}", self.client.delete_object, Bucket=self.bucket, Key=key)
        return existed

    async def list(self, tier: str) -> list[str]:
        base = f"{self.prefix}{tier}/"

        def run() -> list[str]:
            out = []
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                out.extend(o["Key"][len(base) :] for o in page.get("Contents", []))
            return sorted(out)

        return await self._call(f"list {base}", run)

    async def aclose(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
