"""Alembic environment: always online, on the connection nsm hands over (see nsm.telemetry.db)."""
from alembic import context

from nsm.telemetry.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")  # SQLite cannot ALTER most things
with context.begin_transaction():
    context.run_migrations()
