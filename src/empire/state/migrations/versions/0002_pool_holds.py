"""Pool holds: paused personas and drained provider accounts, durable across restarts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 09:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import empire.state.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pool_holds",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("updated_at", empire.state.tables.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "subject", "source", name=op.f("pk_pool_holds")),
    )


def downgrade() -> None:
    op.drop_table("pool_holds")
