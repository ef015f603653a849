"""telemetry_minute: per-minute rollups of robot_telemetry (nsm.telemetry.rollups).

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_minute",
        sa.Column("robot_id", sa.String, primary_key=True),
        sa.Column("minute", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("battery", sa.Float),
        sa.Column("loop_ms_p99", sa.Float),
        sa.Column("loop_ms_max", sa.Float),
        sa.Column("episodes", sa.Integer, nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_telemetry_minute_minute", "telemetry_minute", ["minute"])


def downgrade() -> None:
    op.drop_table("telemetry_minute")
