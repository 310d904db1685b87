"""Backups: the catalog of scheduled backups of this database, for retention and "last success".

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 18:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

import empire.state.tables

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("class", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("slot", sa.String(length=16), nullable=False),
        sa.Column("tier", sa.String(length=64), nullable=False),
        sa.Column("location", sa.String(length=256), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=80), nullable=False),
        sa.Column("created_at", empire.state.tables.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", empire.state.tables.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backups")),
        sa.UniqueConstraint("class", "name", name=op.f("uq_backups_class_name")),
    )
    op.create_index(op.f("ix_backups_class_created_at"), "backups", ["class", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_backups_class_created_at"), table_name="backups")
    op.drop_table("backups")
