"""Fixtures for the integration tests (the services' fixtures are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from fakes.provider import TEST_KEYS


@pytest.fixture
def keys_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The fake provider's test keys in TEST_KEY_A, TEST_KEY_B, TEST_KEY_C."""
    for name, value in TEST_KEYS.items():
        monkeypatch.setenv(f"TEST_KEY_{name.upper()}", value)
    return TEST_KEYS
