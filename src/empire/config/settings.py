"""Process settings: where state lives and how to reach peers. Read once, frozen, validated.

Settings are *deployment* facts (database URL, Prometheus address, credentials) and differ per
environment; the *policy* (what to scale and how) is operator intent and lives in policy YAML or
the EmpireConfig resource. Sources, highest first: `EMPIRE_*` environment variables (nested with
`__`, e.g. `EMPIRE_PROMETHEUS__URL`), then the YAML file named by `EMPIRE_CONFIG_FILE`, then
defaults. Credentials are `SecretStr`: they print as `**********` in reprs, logs and `empire config
show`; a URL is shown only through `empire.config.urls.mask_url` (password replaced by `***`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from empire.boundedio import MAX_YAML_BYTES, read_bounded
from empire.config.urls import check_http_url, check_redis_url, mask_url
from empire.errors import ConfigError

__all__ = ["KubernetesSettings", "PrometheusSettings", "Settings", "load_settings"]


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "empire"


class _Section(BaseModel):
    # hide_input_in_errors: a rejected value may be a credential (a URL with a password).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class PrometheusSettings(_Section):
    # repr=False: the URL may carry user:password@ (httpx sends it as basic auth); shown masked only.
    url: str | None = Field(default=None, description="base URL, e.g. http://prometheus:9090", repr=False)
    bearer_token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = Field(default=10.0, gt=0, description="seconds per request")
    retries: int = Field(default=2, ge=0)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None  # unset, as the daemon always read an empty value
        check_http_url(v)
        return v


class KubernetesSettings(_Section):
    mode: Literal["auto", "in_cluster", "kubeconfig", "disabled"] = Field(
        default="auto", description="auto: in-cluster when a service-account token exists, else kubeconfig"
    )
    kubeconfig: Path | None = Field(default=None, description="default: $KUBECONFIG or ~/.kube/config")
    context: str | None = None
    timeout: float = Field(default=10.0, gt=0)


class HttpSettings(_Section):
    host: str = Field(default="127.0.0.1", description="0.0.0.0 in a container")
    port: int = Field(default=9464, ge=0, le=65535, description="/metrics /healthz /readyz /status /alerts")
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_active_requests: int = Field(
        default=4, ge=1, description="requests handled at once; the rest wait their turn (the control loop's share)"
    )
    # A client cannot hold a connection (agent/httpconn.py): an idle, slow or crowding client is cut off.
    header_timeout: float = Field(default=10.0, gt=0, description="seconds for a request's headers to arrive")
    body_timeout: float = Field(default=30.0, gt=0, description="seconds for a request's body, after its headers")
    keep_alive: float = Field(default=5.0, gt=0, description="idle seconds kept between requests")
    max_connections: int = Field(
        default=100, ge=1, description="open at once; lowered to leave 64 file descriptors free under RLIMIT_NOFILE"
    )
    # The API's gate (agent/api/guard.py): per-caller rate, and which read endpoints need a token.
    rate_per_caller: float = Field(
        default=50.0, ge=0, description="requests per second per token (or client address); 0: unlimited"
    )
    rate_burst: float = Field(default=100.0, ge=1, description="requests a caller may send at once")
    protect_metrics: bool = Field(default=False, description="/metrics needs a token with scope read")
    protect_status: bool = Field(default=False, description="/status needs a token with scope read")
    # HTTPS (agent/tls.py): both files or neither; reloaded when they change (cert-manager rotates them).
    tls_cert_file: Path | None = Field(default=None, description="PEM certificate (chain) for HTTPS; TLS 1.2+")
    tls_key_file: Path | None = Field(default=None, description="PEM private key of tls_cert_file")
    kubernetes_auth: bool = Field(
        default=False, description="accept ServiceAccount tokens: TokenReview + SubjectAccessReview (needs a cluster)"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> HttpSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together: give both (HTTPS) or neither (HTTP)")
        return self


class LeaderSettings(_Section):
    lease_duration: float = Field(default=15.0, gt=0, description="seconds a Redis lease lives unrenewed")
    renew_every: float = Field(
        default=5.0,
        gt=0,
        description="seconds between lease renewals (leader) and takeover attempts (standby), between ticks",
    )


class RetentionSettings(_Section):
    """How long the state DB keeps history (the agent prunes hourly; 0 keeps everything).

    A decision row is written every tick for every target (about 5,800 a day per target at 15 s),
    and every model refit stores a fitted model, so without pruning the database only grows."""

    decisions_days: float = Field(default=14, ge=0, description="decision rows (what `empire explain` shows)")
    actions_days: float = Field(default=90, ge=0, description="settled journal rows; intents are never pruned")
    audit_days: float = Field(default=365, ge=0)
    models_kept: int = Field(default=3, ge=1, description="newest fitted models kept per name, plus the one in use")


class Settings(BaseSettings):
    """Everything the process needs to know about its environment."""

    model_config = SettingsConfigDict(
        env_prefix="EMPIRE_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
        validate_default=True,
        hide_input_in_errors=True,
    )

    data_dir: Path = Field(default_factory=_default_data_dir, description="SQLite DB, tiers, file lock")
    database_url: SecretStr | None = Field(
        default=None,
        description="default sqlite+aiosqlite:///<data_dir>/empire.db; or postgresql+asyncpg://...",
    )
    redis_url: SecretStr | None = Field(default=None, description="shared rate limits and leader lease")
    policy_file: Path | None = Field(default=None, description="default: the shipped example policy")
    policy_source: Literal["file", "database"] = Field(
        default="file",
        description="file: policy_file, hot-reloaded; database: the policy the operator applied (EmpireConfig)",
    )
    replica_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    ingest_token: SecretStr | None = Field(default=None, description="bearer token for the write endpoints")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    shutdown_timeout: float = Field(
        default=80.0,
        gt=0,
        description="seconds from SIGTERM to exit, at most: past it `empire run` prints every thread's stack and "
        "exits 1 (an unfinished intent is settled by read-back at the next start). Above the 60 s action "
        "timeout, below the manifest's 90 s terminationGracePeriodSeconds",
    )
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    leader: LeaderSettings = Field(default_factory=LeaderSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        url = v.get_secret_value()
        scheme = url.split("://", 1)[0] if "://" in url else ""
        allowed = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg")
        if scheme not in allowed:
            raise ValueError(f"unsupported database URL scheme {scheme!r} (valid: {', '.join(allowed)})")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value().strip():
            return None  # an empty EMPIRE_REDIS_URL means no Redis, not a URL redis-py rejects later
        check_redis_url(v.get_secret_value())
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("EMPIRE_CONFIG_FILE")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    @property
    def database_url_value(self) -> str:
        """The effective database URL with the async driver filled in."""
        if self.database_url is None:
            return f"sqlite+aiosqlite:///{self.data_dir / 'empire.db'}"
        url = self.database_url.get_secret_value()
        for plain, driver in (
            ("sqlite://", "sqlite+aiosqlite://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    def policy_path(self, override: str | Path | None = None) -> Path:
        """The policy file to read: `override` (a `--policy` flag), else `policy_file`, else the
        commented example shipped with the package."""
        from empire.policies.loading import default_policy_path

        return Path(override or self.policy_file or default_policy_path())

    def describe(self) -> dict[str, Any]:
        """A printable view: secrets masked, and every string through `mask_url`, so a URL setting
        added later is masked without a change here."""
        out = self.model_dump(mode="json")
        out["database_url"] = self.database_url_value
        if self.redis_url is not None:
            out["redis_url"] = self.redis_url.get_secret_value()
        return _masked(out)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_url(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def load_settings(**overrides: Any) -> Settings:
    """Read settings once; a bad value becomes a `ConfigError` naming the variable.

    The message has one self-contained line per problem (`invalid settings: VAR: message`), so the
    CLI's `empire: error: ` prefix makes each a one-line error that greps and reads alone."""
    config_file = os.environ.get("EMPIRE_CONFIG_FILE")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"EMPIRE_CONFIG_FILE={config_file}: no such file")
    if config_file:  # pydantic-settings reads it whole: refuse a huge one first
        read_bounded(config_file, MAX_YAML_BYTES, "settings file")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            parts = [str(p) for p in err["loc"]]
            var = "EMPIRE_" + "__".join(p.upper() for p in parts)
            lines.append(f"invalid settings: {var}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("\n".join(lines)) from None
    except Exception as exc:  # pydantic-settings parse errors (bad JSON in a complex env value, bad YAML)
        raise ConfigError(f"invalid settings: {' '.join(str(exc).split())}") from None
