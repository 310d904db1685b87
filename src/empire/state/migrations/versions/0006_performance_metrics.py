"""Performance metrics: views, engagement and revenue per track, platform and UTC day.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 05:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import empire.state.tables

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "performance_metrics",
        sa.Column("object_id", sa.String(length=128), nullable=False),
        sa.Column("platform", sa.String(length=128), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        sa.Column("views", sa.BigInteger(), nullable=False),
        sa.Column("engagement", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("updated_at", empire.state.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["object_id"],
            ["content_objects.id"],
            name=op.f("fk_performance_metrics_object_id_content_objects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("object_id", "platform", "period", name=op.f("pk_performance_metrics")),
    )
    op.create_index(
        op.f("ix_performance_metrics_platform_period"), "performance_metrics", ["platform", "period"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_performance_metrics_platform_period"), table_name="performance_metrics")
    op.drop_table("performance_metrics")
