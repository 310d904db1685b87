"""Settings: environment and file sources, defaults, masking of secrets, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from empire.config import load_settings, mask_url
from empire.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("EMPIRE_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_defaults_are_embedded_sqlite(tmp_path: Path) -> None:
    s = load_settings()
    assert s.data_dir == tmp_path / "xdg" / "empire"
    assert s.database_url_value == f"sqlite+aiosqlite:///{tmp_path / 'xdg' / 'empire' / 'empire.db'}"
    assert s.http.host == "127.0.0.1" and s.kubernetes.mode == "auto" and s.prometheus.url is None


def test_environment_and_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPIRE_DATABASE_URL", "postgresql://empire:hunter2@db:5432/empire")
    monkeypatch.setenv("EMPIRE_PROMETHEUS__URL", "http://prom:9090")
    monkeypatch.setenv("EMPIRE_PROMETHEUS__BEARER_TOKEN", "tok-secret")
    monkeypatch.setenv("EMPIRE_HTTP__PORT", "9000")
    s = load_settings()
    assert s.database_url_value == "postgresql+asyncpg://empire:hunter2@db:5432/empire"
    assert s.prometheus.url == "http://prom:9090" and s.http.port == 9000
    shown = repr(s) + str(s) + str(s.describe())
    assert "hunter2" not in shown and "tok-secret" not in shown
    assert s.describe()["database_url"] == "postgresql+asyncpg://empire:***@db:5432/empire"


def test_file_source_with_env_taking_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "empire.yaml"
    f.write_text("log_level: DEBUG\nhttp: {port: 9100}\nprometheus: {url: 'http://from-file:9090'}\n")
    monkeypatch.setenv("EMPIRE_CONFIG_FILE", str(f))
    monkeypatch.setenv("EMPIRE_HTTP__PORT", "9200")
    s = load_settings()
    assert s.log_level == "DEBUG" and s.http.port == 9200 and s.prometheus.url == "http://from-file:9090"


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(Exception, match="frozen"):
        s.log_level = "ERROR"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("EMPIRE_HTTP__PORT", "abc", "EMPIRE_HTTP__PORT: Input should be a valid integer"),
        ("EMPIRE_DATABASE_URL", "mysql://x/y", "EMPIRE_DATABASE_URL: unsupported database URL scheme 'mysql'"),
        ("EMPIRE_KUBERNETES__MODE", "magic", "EMPIRE_KUBERNETES__MODE: Input should be 'auto', 'in_cluster'"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str, message: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert message in str(info.value)


def test_missing_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMPIRE_CONFIG_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings()


def test_mask_url() -> None:
    assert mask_url("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
