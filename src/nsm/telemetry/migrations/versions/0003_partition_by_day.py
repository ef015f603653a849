"""robot_telemetry partitioned by UTC day on PostgreSQL (nsm.telemetry.partitions), every row kept.

The idempotency key gains created_at (a partitioned table's unique keys must hold its
partition key): a retried row repeats its created_at, so it still collides and is stored
once. A BRIN index on created_at serves time ranges at a sliver of a B-tree's size. SQLite
(the embedded default) keeps its plain table: nothing to do there.

Revision ID: 0003
Revises: 0002
"""
from datetime import timedelta

from alembic import op
from sqlalchemy import text

from nsm.telemetry.partitions import DAYS_AHEAD, DEFAULT, TABLE, add_day

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OLD = f"{TABLE}_unpartitioned"
COLUMNS = "id, robot_id, data_type, seq, payload, created_at"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    _set_aside(conn, OLD)
    conn.execute(text(
        f"CREATE TABLE {TABLE} (id bigint NOT NULL DEFAULT nextval('{TABLE}_id_seq'::regclass), "
        "robot_id varchar NOT NULL, data_type varchar NOT NULL, seq bigint NOT NULL, payload jsonb NOT NULL, "
        f"created_at timestamptz NOT NULL, CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, created_at), "
        "CONSTRAINT uq_robot_telemetry_key UNIQUE (robot_id, data_type, seq, created_at)) "
        "PARTITION BY RANGE (created_at)"))
    conn.execute(text(f"CREATE TABLE {DEFAULT} PARTITION OF {TABLE} DEFAULT"))
    conn.execute(text(f"CREATE INDEX ix_{TABLE}_created_at_brin ON {TABLE} USING brin (created_at)"))
    days = conn.execute(text(f"SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM {OLD}")).scalars().all()
    today = conn.execute(text("SELECT (now() AT TIME ZONE 'UTC')::date")).scalar_one()
    for day in sorted(set(days) | {today + timedelta(days=k) for k in range(DAYS_AHEAD + 1)}):
        add_day(conn, day)
    conn.execute(text(f"INSERT INTO {TABLE} ({COLUMNS}) SELECT {COLUMNS} FROM {OLD}"))
    conn.execute(text(f"ALTER SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id"))
    conn.execute(text(f"DROP TABLE {OLD}"))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    partitioned = f"{TABLE}_partitioned"
    _set_aside(conn, partitioned)
    conn.execute(text(
        f"CREATE TABLE {TABLE} (id bigint NOT NULL DEFAULT nextval('{TABLE}_id_seq'::regclass) PRIMARY KEY, "
        "robot_id varchar NOT NULL, data_type varchar NOT NULL, seq bigint NOT NULL, payload jsonb NOT NULL, "
        "created_at timestamptz NOT NULL, CONSTRAINT uq_robot_telemetry_key UNIQUE (robot_id, data_type, seq))"))
    # rows only the wider key told apart (same robot, type and seq at two times) keep their first
    conn.execute(text(f"INSERT INTO {TABLE} ({COLUMNS}) SELECT {COLUMNS} FROM {partitioned} ORDER BY id "
                      "ON CONFLICT (robot_id, data_type, seq) DO NOTHING"))
    conn.execute(text(f"ALTER SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id"))
    conn.execute(text(f"DROP TABLE {partitioned}"))


def _set_aside(conn, name: str) -> None:
    """Rename the table and its constraints (their names are the schema's), freeing them for the new table."""
    conn.execute(text(f"ALTER TABLE {TABLE} RENAME TO {name}"))
    conn.execute(text(f"ALTER TABLE {name} RENAME CONSTRAINT {TABLE}_pkey TO {name}_pkey"))
    conn.execute(text(f"ALTER TABLE {name} RENAME CONSTRAINT uq_robot_telemetry_key TO uq_{name}_key"))
