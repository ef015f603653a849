"""robot_telemetry, episodes, predictions.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

from nsm.telemetry.models import ID_TYPE, JSON_TYPE

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "robot_telemetry",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("robot_id", sa.String, nullable=False),
        sa.Column("data_type", sa.String, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("payload", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("robot_id", "data_type", "seq", name="uq_robot_telemetry_key"),
    )
    op.create_table(
        "episodes",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("robot_id", sa.String, nullable=False),
        sa.Column("path", sa.String, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("frames", sa.Integer, nullable=False),
        sa.Column("success", sa.Boolean),
        sa.Column("policy", sa.String),
        sa.Column("meta", JSON_TYPE, nullable=False),
    )
    op.create_table(
        "predictions",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("robot_id", sa.String, nullable=False),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("confidence", sa.Float),
        sa.Column("unit", sa.String),
        sa.Column("message", sa.String),
        sa.Column("payload", JSON_TYPE, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_predictions_query", "predictions", ["robot_id", "model", "created_at"])


def downgrade() -> None:
    op.drop_table("predictions")
    op.drop_table("episodes")
    op.drop_table("robot_telemetry")
