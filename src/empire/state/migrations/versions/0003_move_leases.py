"""Move leases: which process runs a move, and until when, so recovery never takes a live one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 07:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import empire.state.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("moves") as batch:
        batch.add_column(sa.Column("owner", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", empire.state.tables.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("moves") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("owner")
