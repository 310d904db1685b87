"""Alembic environment: always handed a live connection by `empire.state.migrations.run_upgrade`."""

from __future__ import annotations

from alembic import context

from empire.state.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline SQL generation is not supported
    raise RuntimeError("run migrations through 'empire db upgrade'")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
context.run_migrations()
