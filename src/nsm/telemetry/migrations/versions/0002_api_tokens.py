"""api_tokens: per-robot and read-only tokens for `nsm serve`, stored hashed.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

from nsm.telemetry.models import ID_TYPE

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", ID_TYPE, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("robot_id", sa.String),
        sa.Column("token_sha256", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("token_sha256", name="uq_api_tokens_sha256"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
