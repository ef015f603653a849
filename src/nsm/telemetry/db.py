"""Engines for the telemetry database: SQLite (embedded default) or PostgreSQL."""
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from nsm.errors import NsmError
from nsm.telemetry.models import Base

CONNECT_TIMEOUT_S = 3


def make_engine(url: str) -> Engine:
    """An engine for `url`; `postgresql://` uses psycopg 3 (the driver nsm installs)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise NsmError(f"database URL '{url}' is not valid (e.g. sqlite:///runs/telemetry.db or postgresql://user@host/db)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(parsed, connect_args={"timeout": CONNECT_TIMEOUT_S})
    raise NsmError(f"database URL '{url}': only sqlite:// and postgresql:// are supported")


def connect(url: str) -> Engine:
    """Engine with the schema in place; one clear error if the database cannot be reached."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT 1"))
        Base.metadata.create_all(engine)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        shown = make_url(url).render_as_string(hide_password=True) if "://" in url else url
        raise NsmError(f"cannot reach database {shown}: {reason}; start it or pass --db-url sqlite:///runs/telemetry.db") from None
    return engine
