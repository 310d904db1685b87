"""Settings: environment and file sources, defaults, masking of secrets, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from empire.config.settings import load_settings
from empire.config.urls import mask_url
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
    assert mask_url("postgresql+asyncpg://app:s3cret@db:5432/empire") == "postgresql+asyncpg://app:***@db:5432/empire"
    assert mask_url("redis://:p@ss@h/0") == "redis://:***@h/0"  # an unencoded @ leaves nothing behind
    assert mask_url("http://h/q?query=up&api_key=K3Y&x=1") == "http://h/q?query=up&api_key=***&x=1"
    assert mask_url("https://s3/b/o?X-Amz-Signature=abc") == "https://s3/b/o?X-Amz-Signature=***"
    assert mask_url("no url here: a@b, x=1") == "no url here: a@b, x=1"


def test_mask_url_masks_every_url_in_a_message() -> None:
    message = "prometheus http://u:Pw1@p:9090 unreachable; 'redis://:Pw2@r:6379/0' and <https://a:Pw3@x/y>"
    masked = mask_url(message)
    assert "Pw" not in masked
    assert masked == "prometheus http://u:***@p:9090 unreachable; 'redis://:***@r:6379/0' and <https://a:***@x/y>"


def test_a_prometheus_url_with_a_password_is_masked_in_repr_and_describe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPIRE_PROMETHEUS__URL", "http://user:PromPw9@prom:9090")
    monkeypatch.setenv("EMPIRE_DATABASE_URL", "postgresql://app:DbPw9@db/empire")
    monkeypatch.setenv("EMPIRE_REDIS_URL", "redis://:RedisPw9@redis:6379/0")
    s = load_settings()
    assert s.prometheus.url == "http://user:PromPw9@prom:9090"  # the adapter still gets it whole
    shown = s.describe()
    assert shown["prometheus"]["url"] == "http://user:***@prom:9090"
    assert shown["database_url"] == "postgresql+asyncpg://app:***@db/empire"
    assert shown["redis_url"] == "redis://:***@redis:6379/0"
    for text in (repr(s), str(s), repr(s.prometheus), str(shown)):
        assert "Pw9" not in text


REDIS_FORMS = "valid forms: redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix:///path/to/redis.sock"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("garbage", "not a URL (no scheme://)"),
        ("localhost:6379", "not a URL (no scheme://)"),
        ("http://redis:6379/0", "unsupported scheme 'http'"),
        ("REDIS://redis:6379", "unsupported scheme 'REDIS'"),  # redis-py compares the scheme as written
        ("redis://", "no host"),
        ("redis://:hunter2@redis:abc/0", "the port is not a number from 1 to 65535 (percent-encode"),
        ("redis://:hun#ter2@redis:6379/0", "no host (percent-encode / ? # @ : in a password)"),
        ("redis://redis:6379/zero", "the database number (the path after host:port) is not a whole number"),
        ("redis://redis:6379/?db=x", "the db= query value is not a whole number"),
        ("unix://", "no socket path"),
    ],
)
def test_bad_redis_url_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    """Found here, not as "leader election failed" on every tick of a daemon that never acts."""
    monkeypatch.setenv("EMPIRE_REDIS_URL", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert f"EMPIRE_REDIS_URL: {problem}" in message
    assert REDIS_FORMS in message
    assert "hunter2" not in message and "hun#ter2" not in message and "ter2" not in message


@pytest.mark.parametrize(
    "value",
    ["redis://redis:6379/0", "redis://:pw@redis", "rediss://user:pw@redis:6380/2", "redis://[::1]:6379",
     "unix:///run/redis.sock", "unix:///run/redis.sock?db=3", "redis://redis:6379/?db=1"],
)  # fmt: skip
def test_good_redis_urls_pass(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("EMPIRE_REDIS_URL", value)
    s = load_settings()
    assert s.redis_url is not None and s.redis_url.get_secret_value() == value


def test_empty_peer_urls_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPIRE_REDIS_URL", "")
    monkeypatch.setenv("EMPIRE_PROMETHEUS__URL", "")
    s = load_settings()
    assert s.redis_url is None and s.prometheus.url is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("notaurl", "not a URL (no scheme://)"),
        ("prometheus:9090", "not a URL (no scheme://)"),
        ("ftp://prom", "unsupported scheme 'ftp'"),
        ("http://", "no host"),
        ("http://prom:90x", "the port is not a number from 1 to 65535"),
    ],
)
def test_bad_prometheus_url_is_a_settings_error(monkeypatch: pytest.MonkeyPatch, value: str, problem: str) -> None:
    """Not "metric source unreachable" at every tick."""
    monkeypatch.setenv("EMPIRE_PROMETHEUS__URL", value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert f"EMPIRE_PROMETHEUS__URL: {problem}; valid forms: http://host[:port][/path] or https://" in str(info.value)


def test_prometheus_url_in_the_file_is_checked_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "empire.yaml"
    f.write_text("prometheus: {url: 'ftp://prom:9090'}\n")
    monkeypatch.setenv("EMPIRE_CONFIG_FILE", str(f))
    with pytest.raises(ConfigError, match="EMPIRE_PROMETHEUS__URL: unsupported scheme 'ftp'"):
        load_settings()


def test_rejected_values_are_not_echoed_even_by_pydantic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() built directly (not through load_settings) must not print the URL either."""
    from pydantic import ValidationError

    from empire.config.settings import Settings

    with pytest.raises(ValidationError) as info:
        Settings(redis_url="redis://:hunter2@redis:abc/0")
    assert "hunter2" not in str(info.value)


def test_each_problem_is_one_self_contained_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The README promises a one-line error per problem: no header line standing alone."""
    monkeypatch.setenv("EMPIRE_HTTP__PORT", "abc")
    monkeypatch.setenv("EMPIRE_LOG_LEVEL", "LOUD")
    with pytest.raises(ConfigError) as info:
        load_settings()
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert all(line.startswith("invalid settings: EMPIRE_") for line in lines)
    assert "invalid settings: EMPIRE_HTTP__PORT: Input should be a valid integer" in lines[0] + lines[1]


def test_unparseable_config_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "empire.yaml"
    f.write_text("http: [\n")
    monkeypatch.setenv("EMPIRE_CONFIG_FILE", str(f))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith("invalid settings: ") and "\n" not in str(info.value)
