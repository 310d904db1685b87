"""One contract for every StorageBackend: local directories and S3 (moto server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from empire.agent.ports import StorageBackend
from empire.agent.tiering.backends import LocalBackend
from empire.errors import ConfigError, NotFoundError, PermanentError
from empire.policies.storage import S3Backend as S3Settings

pytestmark = pytest.mark.anyio

TIERS = {"hot": "STANDARD", "warm": "STANDARD_IA", "cold": "ONEZONE_IA", "archive": "GLACIER_IR"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("boto3")
    pytest.importorskip("moto")
    from fakes.s3 import moto_server

    with moto_server() as url:
        yield url


def _s3(endpoint: str):
    import boto3

    from empire.agent.tiering.backends.s3 import S3Backend

    os.environ.setdefault("EMPIRE_TEST_S3_KEY", "test")
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").create_bucket(Bucket=bucket)  # fmt: skip
    settings = S3Settings(
        bucket=bucket, endpoint_url=endpoint, prefix="content/", addressing_style="path",
        access_key_id={"env": "EMPIRE_TEST_S3_KEY"}, secret_access_key={"env": "EMPIRE_TEST_S3_KEY"},
    )  # fmt: skip
    return S3Backend(settings, TIERS)


@pytest.fixture(params=["local", "s3"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StorageBackend]:
    if request.param == "local":
        b: StorageBackend = LocalBackend({t: tmp_path / t for t in TIERS}, chunk_size=64 * 1024)
    else:
        b = _s3(request.getfixturevalue("s3_endpoint"))
    try:
        yield b
    finally:
        await b.aclose()


async def chunks(data: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def read_all(backend: StorageBackend, tier: str, location: str) -> bytes:
    return b"".join([block async for block in backend.read(tier, location)])


DATA = os.urandom(700_000)


async def test_is_a_storage_backend(backend: StorageBackend) -> None:
    assert isinstance(backend, StorageBackend)
    assert backend.tier_names == tuple(TIERS)


async def test_put_then_read_back_with_checksum(backend: StorageBackend) -> None:
    loc = backend.location_for("track-1")
    size, checksum = await backend.put("hot", loc, chunks(DATA))
    assert (size, checksum) == (len(DATA), digest(DATA))
    assert await read_all(backend, "hot", loc) == DATA
    assert await backend.checksum("hot", loc) == digest(DATA)
    assert await backend.exists("hot", loc)
    assert not await backend.exists("warm", loc)
    assert await backend.list("hot") == [loc]
    assert await backend.list("warm") == []


async def test_put_replaces_an_existing_object(backend: StorageBackend) -> None:
    loc = backend.location_for("track-1")
    await backend.put("hot", loc, chunks(b"old"))
    await backend.put("hot", loc, chunks(DATA[:1000]))
    assert await read_all(backend, "hot", loc) == DATA[:1000]
    assert await backend.list("hot") == [loc]


async def test_copy_between_tiers_keeps_the_bytes_and_reports_progress(backend: StorageBackend) -> None:
    loc = backend.location_for("track-2")
    await backend.put("hot", loc, chunks(DATA))
    seen: list[int] = []

    async def progress(n: int) -> None:
        seen.append(n)

    assert await backend.copy("hot", loc, "archive", loc, progress) == len(DATA)
    assert sum(seen) == len(DATA)
    assert await backend.checksum("archive", loc) == digest(DATA)
    assert await backend.checksum("hot", loc) == digest(DATA)  # copy leaves the source


async def test_missing_objects_are_not_found(backend: StorageBackend) -> None:
    loc = backend.location_for("missing")
    with pytest.raises(NotFoundError):
        await backend.checksum("hot", loc)
    with pytest.raises(NotFoundError):
        await read_all(backend, "hot", loc)
    with pytest.raises(NotFoundError):
        await backend.copy("hot", loc, "cold", loc)
    assert not await backend.exists("hot", loc)


async def test_delete_is_idempotent(backend: StorageBackend) -> None:
    loc = backend.location_for("track-3")
    await backend.put("warm", loc, chunks(b"x" * 10))
    assert await backend.delete("warm", loc) is True
    assert await backend.delete("warm", loc) is False
    assert not await backend.exists("warm", loc)
    assert await backend.list("warm") == []


async def test_locations_are_deterministic_and_safe_for_any_id(backend: StorageBackend) -> None:
    odd = ["../../etc/passwd", "persona/track 1", "naïve", "x.partial", "/abs", ""]
    locs = [backend.location_for(i) for i in odd]
    assert len(set(locs)) == len(odd)
    assert locs == [backend.location_for(i) for i in odd]
    for loc in locs:
        assert ".." not in loc.split("/") and not loc.startswith("/")
        await backend.put("cold", loc, chunks(b"ok"))
    assert sorted(await backend.list("cold")) == sorted(locs)


async def test_rejects_unknown_tiers_and_unsafe_locations(backend: StorageBackend) -> None:
    with pytest.raises(ConfigError, match="unknown tier"):
        await backend.exists("lukewarm", "ab/x")
    with pytest.raises(PermanentError, match="invalid storage location"):
        await backend.put("hot", "../escape", chunks(b"x"))


async def test_s3_tiers_use_their_storage_class(s3_endpoint: str) -> None:
    backend = _s3(s3_endpoint)
    loc = backend.location_for("track-4")
    await backend.put("hot", loc, chunks(b"abc"))
    await backend.copy("hot", loc, "archive", loc)
    head = backend.client.head_object(Bucket=backend.bucket, Key=backend.key("archive", loc))
    assert head.get("StorageClass") == "GLACIER_IR"
    assert backend.key("archive", loc).startswith("content/archive/")
    await backend.aclose()


def test_s3_refuses_storage_classes_that_need_a_restore() -> None:
    pytest.importorskip("boto3")
    from empire.agent.tiering.backends.s3 import S3Backend

    with pytest.raises(ConfigError, match="GLACIER"):
        S3Backend(S3Settings(bucket="bkt"), {"hot": None, "deep": "DEEP_ARCHIVE"})


async def test_a_failed_write_leaves_nothing_behind(backend: StorageBackend) -> None:
    loc = backend.location_for("track-5")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError, match="producer died"):
        await backend.put("hot", loc, broken())
    assert not await backend.exists("hot", loc)
    assert await backend.list("hot") == []
    assert await backend.delete("hot", loc) is False
