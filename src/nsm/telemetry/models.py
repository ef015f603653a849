"""Tables, per DESIGN.md section 4. The schema itself is owned by the Alembic migrations in
`migrations/versions/`; these classes mirror them for queries.

`robot_telemetry` is the table the AI team queries:

    SELECT created_at, (payload->>'value')::float FROM robot_telemetry
    WHERE data_type = 'battery' AND robot_id = 'EP01'

JSONB on PostgreSQL, JSON on SQLite (the embedded default).
"""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Index, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

JSON_TYPE = JSON().with_variant(JSONB, "postgresql")
ID_TYPE = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only


class Base(DeclarativeBase):
    metadata = MetaData()


class RobotTelemetry(Base):
    __tablename__ = "robot_telemetry"
    # The unique key is also the index the AI team's queries use (robot_id, data_type prefix);
    # a second index would slow every insert for little. On PostgreSQL the table is partitioned
    # by day (migration 0003, nsm.telemetry.partitions): the key there ends with created_at.
    __table_args__ = (UniqueConstraint("robot_id", "data_type", "seq", name="uq_robot_telemetry_key"),)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    robot_id: Mapped[str] = mapped_column(String, nullable=False)
    data_type: Mapped[str] = mapped_column(String, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    payload: Mapped[dict] = mapped_column(JSON_TYPE, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Episode(Base):
    """One recorded episode: where its file is and how it went."""

    __tablename__ = "episodes"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    robot_id: Mapped[str] = mapped_column(String, nullable=False)
    path: Mapped[str] = mapped_column(String, nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    duration_s: Mapped[float] = mapped_column(Float, nullable=False)
    frames: Mapped[int] = mapped_column(Integer, nullable=False)
    success: Mapped[bool | None] = mapped_column(Boolean)
    policy: Mapped[str | None] = mapped_column(String)
    meta: Mapped[dict] = mapped_column(JSON_TYPE, nullable=False, default=dict)


class Prediction(Base):
    """A model's output about a robot (e.g. collision risk), as shown to operators."""

    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_query", "robot_id", "model", "created_at"),)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    robot_id: Mapped[str] = mapped_column(String, nullable=False)
    model: Mapped[str] = mapped_column(String, nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    confidence: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String)
    message: Mapped[str | None] = mapped_column(String)
    payload: Mapped[dict] = mapped_column(JSON_TYPE, nullable=False, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class TelemetryMinute(Base):
    """One robot's minute of telemetry, rolled up (nsm.telemetry.rollups): what the dashboard
    reads instead of ~5,500 raw rows a robot-minute."""

    __tablename__ = "telemetry_minute"
    __table_args__ = (Index("ix_telemetry_minute_minute", "minute"),)

    robot_id: Mapped[str] = mapped_column(String, primary_key=True)
    minute: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)  # UTC, start of the minute
    rows: Mapped[int] = mapped_column(Integer, nullable=False)
    battery: Mapped[float | None] = mapped_column(Float)  # mean percent; NULL: unknown all minute
    loop_ms_p99: Mapped[float | None] = mapped_column(Float)  # control period, nearest-rank p99
    loop_ms_max: Mapped[float | None] = mapped_column(Float)
    episodes: Mapped[int] = mapped_column(Integer, nullable=False)  # `episode` rows (one per recorded episode)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ApiToken(Base):
    """Who may use `nsm serve`: a robot's token writes that robot's rows only; a read token
    writes nothing. The token itself is never stored: its SHA-256 is (nsm.telemetry.tokens)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String, nullable=False)
    role: Mapped[str] = mapped_column(String, nullable=False)
    robot_id: Mapped[str | None] = mapped_column(String)
    token_sha256: Mapped[str] = mapped_column(String, nullable=False, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
