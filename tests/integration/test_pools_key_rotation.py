"""A key rotated in its secret is picked up without a restart: after a 401/403 the HTTP provider
reads the account's key again from its reference before the next request (the probe after the
cooldown), against the fake provider over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from empire.agent.pools.build import build_adapters
from empire.agent.pools.errors import AuthFailed
from empire.agent.pools.providers.base import JobProvider, JobRequest
from empire.policies.generation import Provider
from fakes.provider import FakeKey, FakeProvider, http_provider_policy

pytestmark = pytest.mark.anyio


@contextmanager
def provider_with_key_file(fake: FakeProvider, key_file: Path, key: str) -> Iterator[JobProvider]:
    """The fake served, and an HTTP adapter whose account `a` reads its key from `key_file`."""
    key_file.write_text(key + "\n")
    with fake.serve():
        spec = http_provider_policy(fake.url, "music", [{"name": "a", "env": "UNUSED"}])
        spec["accounts"][0]["api_key"] = {"file": str(key_file)}
        yield build_adapters((Provider.model_validate(spec),))["music"]


async def test_a_rejected_key_is_read_again_from_its_secret_before_the_next_request(tmp_path) -> None:
    fake = FakeProvider(keys={"sk-new-2": FakeKey(rpm=6000)}, latency=0.01)
    key_file = tmp_path / "music-key"
    with provider_with_key_file(fake, key_file, "sk-old-1") as adapter:
        try:
            with pytest.raises(AuthFailed):
                await adapter.submit("a", JobRequest("job-1", "a song"))
            key_file.write_text("sk-new-2\n")  # the operator rotates the key in the secret
            submission = await adapter.submit("a", JobRequest("job-1", "a song"))
            assert submission.provider_job_id
            assert "sk-new-2" not in repr(adapter) and "sk-old-1" not in repr(adapter)
        finally:
            await adapter.aclose()


async def test_an_unreadable_secret_keeps_the_old_key(tmp_path) -> None:
    fake = FakeProvider(keys={"sk-1": FakeKey(rpm=6000, dead=True)}, latency=0.01)
    key_file = tmp_path / "music-key"
    with provider_with_key_file(fake, key_file, "sk-1") as adapter:
        try:
            with pytest.raises(AuthFailed):
                await adapter.submit("a", JobRequest("job-1", "a song"))
            key_file.unlink()  # mid-rotation: the file is briefly gone
            with pytest.raises(AuthFailed):  # still answered by the provider with the old key, no crash
                await adapter.submit("a", JobRequest("job-1", "a song"))
        finally:
            await adapter.aclose()
