"""Alembic environment: migrations run on the connection fabqual hands over (never from alembic.ini)."""

from __future__ import annotations

from alembic import context

from fabqual.results_db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
