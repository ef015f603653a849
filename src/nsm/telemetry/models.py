"""Tables, per DESIGN.md section 4. `robot_telemetry` is the table the AI team queries:

    SELECT created_at, (payload->>'value')::float FROM robot_telemetry
    WHERE data_type = 'battery' AND robot_id = 'EP01'

JSONB on PostgreSQL, JSON on SQLite (the embedded default).
"""
from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    metadata = MetaData()


class RobotTelemetry(Base):
    __tablename__ = "robot_telemetry"
    __table_args__ = (UniqueConstraint("robot_id", "data_type", "seq", name="uq_robot_telemetry_key"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    robot_id: Mapped[str] = mapped_column(String, nullable=False)
    data_type: Mapped[str] = mapped_column(String, nullable=False)
    seq: Mapped[int] = mapped_column(BigInteger, nullable=False)
    payload: Mapped[dict] = mapped_column(JSON().with_variant(JSONB, "postgresql"), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
