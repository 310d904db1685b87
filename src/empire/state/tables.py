"""The state database's tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

Why Core and not ORM: every query here is a small, explicit statement (claim a job, mark an action
applied, select move candidates in SQL); Core keeps them visible and portable. Timestamps are
stored as UTC and always read back timezone-aware (`UTCDateTime`), because SQLite has no
timezone-aware type and comparing naive with aware datetimes is an error waiting to happen.

Alembic migrations in `empire/state/migrations/versions/` create these tables; a test checks that
the migrated schema matches this module.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

__all__ = [
    "actions",
    "alerts",
    "api_tokens",
    "audit",
    "backups",
    "content_objects",
    "decisions",
    "jobs",
    "metadata",
    "model_registry",
    "moves",
    "notifications",
    "performance_metrics",
    "policy_versions",
    "pool_holds",
    "silences",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; returns aware datetimes on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = JSON().with_variant(JSONB(), "postgresql")
Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


def _pk() -> Column[int]:
    return Column("id", Id, primary_key=True, autoincrement=True)


decisions = Table(
    "decisions",
    metadata,
    _pk(),
    Column("at", UTCDateTime, nullable=False),
    Column("target", String(128), nullable=False),
    Column("current", Integer),
    Column("recommended", Integer),
    Column("desired", Integer),
    Column("reasons", Json, nullable=False),  # list of Reason values, in the order they applied
    Column("details", Json, nullable=False),  # signal values, forecast, clamps
    Column("policy_version", String(32)),
    Column("replica", String(128)),
    Column("dry_run", Boolean, nullable=False, default=False),
    Index(None, "target", "at"),
)

actions = Table(
    "actions",
    metadata,
    _pk(),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("decision_id", Id, ForeignKey("decisions.id", ondelete="SET NULL")),
    Column("kind", String(32), nullable=False),  # scale | generate | retier | alert | ingest ...
    Column("subject", String(256), nullable=False),  # target, job, object, alert group
    Column("params", Json, nullable=False),
    Column("reason", String(64), nullable=False),
    Column("state", String(16), nullable=False),  # intent | applied | failed | skipped | reconciled
    Column("error", Text),
    Column("replica", String(128)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "state"),
    Index(None, "subject", "created_at"),
)

jobs = Table(
    "jobs",
    metadata,
    _pk(),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("persona", String(128)),
    Column("provider", String(128), nullable=False),
    Column("account", String(128)),
    Column("priority", Integer, nullable=False, default=1),  # 0 high, 1 normal, 2 low
    Column("state", String(16), nullable=False),  # queued|leased|submitted|succeeded|failed|dead|cancelled|deferred
    Column("attempts", Integer, nullable=False, default=0),
    Column("not_before", UTCDateTime, nullable=False),
    Column("lease_owner", String(128)),
    Column("lease_expires_at", UTCDateTime),
    Column("provider_job_id", String(256)),
    Column("request", Json, nullable=False),
    Column("result", Json),
    Column("last_error", Text),
    Column("error_class", String(32)),
    Column("cost", Float),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Index(None, "state", "priority", "not_before"),
    Index(None, "provider", "finished_at"),
)

content_objects = Table(
    "content_objects",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("checksum", String(128), nullable=False),  # "sha256:<hex>"
    Column("tier", String(64), nullable=False),
    Column("location", Text, nullable=False),
    Column("persona", String(128)),
    Column("title", Text),
    Column("status", String(16), nullable=False, default="active"),  # active | quarantined | moving
    Column("created_at", UTCDateTime, nullable=False),
    Column("tier_since", UTCDateTime, nullable=False),
    Column("last_access_at", UTCDateTime),
    Column("access_score", Float, nullable=False, default=0.0),  # decayed access count
    Column("access_updated_at", UTCDateTime),
    Column("revenue", Float, nullable=False, default=0.0),
    Column("meta", Json, nullable=False),
    Index(None, "tier", "last_access_at"),
    Index(None, "persona"),
)

moves = Table(
    "moves",
    metadata,
    _pk(),
    Column("object_id", String(128), ForeignKey("content_objects.id", ondelete="CASCADE"), nullable=False),
    Column("from_tier", String(64), nullable=False),
    Column("to_tier", String(64), nullable=False),
    Column("src_location", Text, nullable=False),
    Column("dst_location", Text, nullable=False),
    Column("step", String(16), nullable=False),  # planned | copied | verified | switched | done | aborted
    Column("reason", String(64), nullable=False),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("owner", String(200)),  # the process running the move (tiering.owner.process_owner)
    Column("lease_expires_at", UTCDateTime),  # renewed at each step; recovery waits for it
    Index(None, "step"),
)

alerts = Table(
    "alerts",
    metadata,
    _pk(),
    Column("fingerprint", String(64), nullable=False),
    Column("rule", String(128), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("labels", Json, nullable=False),
    Column("annotations", Json, nullable=False),
    Column("state", String(16), nullable=False),  # firing | resolved
    Column("value", Float),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("fingerprint", "starts_at"),
    Index(None, "state"),
)

notifications = Table(  # the alert outbox: nothing is lost while a receiver is down
    "notifications",
    metadata,
    _pk(),
    Column("receiver", String(128), nullable=False),
    Column("group_key", String(512), nullable=False),
    Column("payload", Json, nullable=False),
    Column("state", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Index(None, "state", "next_attempt_at"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("matchers", Json, nullable=False),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
)

pool_holds = Table(  # paused personas and drained accounts (alert remediations, `empire pools hold`)
    "pool_holds",
    metadata,
    Column("kind", String(16), primary_key=True),  # persona | account
    Column("subject", String(256), primary_key=True),  # persona name | provider/account
    Column("source", String(128), primary_key=True),  # the alert rule that asked, or "manual"
    Column("held", Boolean, nullable=False),  # a subject is held while any of its sources holds it
    Column("reason", String(64), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

policy_versions = Table(
    "policy_versions",
    metadata,
    Column("version", String(32), primary_key=True),
    Column("source", Text, nullable=False),
    Column("body", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("applied_at", UTCDateTime),
)

model_registry = Table(
    "model_registry",
    metadata,
    _pk(),
    Column("name", String(256), nullable=False),  # e.g. forecast:generator/queue
    Column("kind", String(64), nullable=False),
    Column("params", Json, nullable=False),
    Column("metrics", Json, nullable=False),  # validation error, baseline error, n rows
    Column("blob", LargeBinary),
    Column("in_use", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "name", "created_at"),
)

audit = Table(
    "audit",
    metadata,
    _pk(),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(256), nullable=False),
    Column("details", Json, nullable=False),
    Index(None, "at"),
)

api_tokens = Table(  # the HTTP API's named tokens (empire.agent.api.auth): a digest, never the token
    "api_tokens",
    metadata,
    Column("id", String(16), primary_key=True),  # the public part of emp_<id>_<secret>
    Column("name", String(128), nullable=False),
    Column("scopes", Json, nullable=False),
    Column("digest", String(64), nullable=False),  # sha256 hex of the secret part
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("expires_at", UTCDateTime),
    Column("revoked_at", UTCDateTime),
    Index(None, "name"),
)

performance_metrics = Table(  # per track, platform and UTC day (empire.agent.pools.performance): upserted
    "performance_metrics",
    metadata,
    Column("object_id", String(128), ForeignKey("content_objects.id", ondelete="CASCADE"), primary_key=True),
    Column("platform", String(128), primary_key=True),
    Column("period", Date, primary_key=True),  # the UTC day the figure is for
    Column("views", BigInteger, nullable=False, default=0),
    Column("engagement", BigInteger, nullable=False, default=0),
    Column("revenue", Float, nullable=False, default=0.0),  # earned that day
    Column("source", String(32), nullable=False),  # api | csv | pull
    Column("updated_at", UTCDateTime, nullable=False),  # a revised figure replaces the row
    Index(None, "platform", "period"),
)

backups = Table(  # the catalog of scheduled backups (empire.agent.backup): what retention prunes
    "backups",
    metadata,
    _pk(),
    Column("class", String(16), nullable=False),  # hourly | daily | monthly
    Column("name", String(128), nullable=False),  # the artifact's name
    Column("slot", String(16), nullable=False),  # the class's hour/day/month it fills
    Column("tier", String(64), nullable=False),
    Column("location", String(256), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("checksum", String(80), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("deleted_at", UTCDateTime),
    UniqueConstraint("class", "name"),
    Index(None, "class", "created_at"),
)
