"""Alembic environment: runs against the engine disgorge hands it (never a URL in an ini)."""

from __future__ import annotations

from alembic import context

from disgorge.catalog import api_models, dsr_models  # noqa: F401  (their tables join Base's metadata)
from disgorge.catalog.models import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
