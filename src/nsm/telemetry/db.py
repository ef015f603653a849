"""Engines for the telemetry database: SQLite (embedded default) or PostgreSQL."""
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from nsm.errors import NsmError

CONNECT_TIMEOUT_S = 3


def make_engine(url: str) -> Engine:
    """An engine for `url`; `postgresql://` uses psycopg 3 (the driver nsm installs)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise NsmError(f"database URL '{url}' is not valid (e.g. sqlite:///runs/telemetry.db or "
                       "postgresql://user@host/db)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(parsed, connect_args={"timeout": CONNECT_TIMEOUT_S})
    raise NsmError(f"database URL '{url}': only sqlite:// and postgresql:// are supported")


def _alembic_config(connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "nsm.telemetry:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Migrate the database to `revision` (Alembic); returns the revision it is at."""
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), revision)
        return MigrationContext.configure(conn).get_current_revision()


def downgrade(engine: Engine, revision: str) -> str | None:
    """Migrate back to `revision` ('base' = empty)."""
    with engine.begin() as conn:
        command.downgrade(_alembic_config(conn), revision)
        return MigrationContext.configure(conn).get_current_revision()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def connect(url: str, migrate: bool = True) -> Engine:
    """Engine with the schema at head (unless `migrate=False`); one clear error if the
    database cannot be reached."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
        if migrate:
            upgrade(engine)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        shown = make_url(url).render_as_string(hide_password=True) if "://" in url else url
        raise NsmError(f"cannot reach database {shown}: {reason}; start it or pass --db-url "
                       "sqlite:///runs/telemetry.db") from None
    return engine
