"""telemetry_minute_pending: the robot-minutes that got rows since they were last rolled up.

Every write of robot_telemetry adds a row here per robot and minute it wrote (nsm.telemetry.sinks);
the rollups roll up those robot-minutes and delete these rows (nsm.telemetry.rollups), so a
spool replayed hours late is counted, and a round reads only the minutes that changed. No key:
a writer never waits on the rollups' delete of the same robot-minute.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_minute_pending",
        sa.Column("robot_id", sa.String, nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),  # UTC, start of the minute
    )
    # rows of the last minutes, which the rollups before this revision would have rolled up again
    minute = {"postgresql": "date_trunc('minute', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
              "sqlite": "strftime('%Y-%m-%d %H:%M:00.000000', created_at)"}[op.get_bind().dialect.name]
    since = {"postgresql": "now() - interval '5 minutes'",
             "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-5 minutes')"}[op.get_bind().dialect.name]
    op.execute(f"INSERT INTO telemetry_minute_pending (robot_id, minute) SELECT DISTINCT robot_id, {minute} "
               f"FROM robot_telemetry WHERE created_at >= {since}")


def downgrade() -> None:
    op.drop_table("telemetry_minute_pending")
