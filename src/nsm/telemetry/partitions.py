"""`robot_telemetry` on PostgreSQL, partitioned by day (declarative range partitioning on
`created_at`, UTC days), so that a fleet's ~790 million rows a day stay queryable and old
days leave as whole tables (`nsm db prune`: DROP TABLE, no vacuum of deleted rows).

    robot_telemetry                 the partitioned table (what every query names)
    robot_telemetry_p20261201       one partition per UTC day, made ahead of time
    robot_telemetry_default         whatever no day partition holds (a clock far off)

The server makes the coming days' partitions at start and hourly (`ensure_days`); a row
written before its day exists lands in the default partition and moves into the day's table
when that is made. The embedded SQLite keeps one plain table (one robot's data).
"""
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from nsm.telemetry.sinks import sql_time

TABLE = "robot_telemetry"
DEFAULT = f"{TABLE}_default"
DAYS_AHEAD = 7


def partition_name(day: date) -> str:
    return f"{TABLE}_p{day:%Y%m%d}"


def is_partitioned(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql" and conn.execute(text(
        "SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass(:t)"), {"t": TABLE}).first() is not None


def day_partitions(conn: Connection) -> dict[date, str]:
    """The day partitions that exist: day -> table name."""
    names = conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                              "WHERE i.inhparent = to_regclass(:t)"), {"t": TABLE}).scalars()
    prefix = f"{TABLE}_p"
    return {datetime.strptime(n.removeprefix(prefix), "%Y%m%d").date(): n for n in names if n.startswith(prefix)}


def add_day(conn: Connection, day: date) -> bool:
    """Make `day`'s partition if it is missing, moving that day's rows out of the default
    partition (PostgreSQL refuses a new partition while the default holds rows of its range)."""
    if day in day_partitions(conn):
        return False
    name, start, end = partition_name(day), f"{day.isoformat()} 00:00+00", f"{(day + timedelta(days=1)).isoformat()} 00:00+00"
    bounds = {"start": start, "end": end}
    conn.execute(text(f"CREATE TABLE {name} (LIKE {TABLE} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    moved = "created_at >= CAST(:start AS timestamptz) AND created_at < CAST(:end AS timestamptz)"
    conn.execute(text(f"INSERT INTO {name} SELECT * FROM {DEFAULT} WHERE {moved}"), bounds)
    conn.execute(text(f"DELETE FROM {DEFAULT} WHERE {moved}"), bounds)
    conn.execute(text(f"ALTER TABLE {TABLE} ATTACH PARTITION {name} FOR VALUES FROM ('{start}') TO ('{end}')"))
    return True


def ensure_days(engine: Engine, days_ahead: int = DAYS_AHEAD, today: date | None = None) -> list[str]:
    """Today's and the next `days_ahead` days' partitions (PostgreSQL, partitioned table only);
    the names made."""
    today = today or datetime.now(UTC).date()
    made = []
    with engine.begin() as conn:
        if not is_partitioned(conn):
            return []
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": TABLE})  # one server at a time
        for k in range(days_ahead + 1):
            day = today + timedelta(days=k)
            if add_day(conn, day):
                made.append(partition_name(day))
    return made


def prune(engine: Engine, older_than: timedelta, now: datetime | None = None) -> tuple[list[str], int]:
    """Drop the day partitions that end before `now - older_than` (and delete such rows from the
    default partition, or from SQLite's plain table), and the rollups' notes of such minutes (on
    a database no `nsm serve` rolls up they pile up). Returns (tables dropped, rows deleted)."""
    cutoff = (now or datetime.now(UTC)) - older_than
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM telemetry_minute_pending WHERE minute < :c"),
                     {"c": sql_time(conn.dialect.name, cutoff)})
        if not is_partitioned(conn):
            stamp = sql_time(conn.dialect.name, cutoff)
            return [], conn.execute(text(f"DELETE FROM {TABLE} WHERE created_at < :c"), {"c": stamp}).rowcount
        dropped = []
        for day, name in sorted(day_partitions(conn).items()):
            if datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC) <= cutoff:
                conn.execute(text(f"DROP TABLE {name}"))
                dropped.append(name)
        deleted = conn.execute(text(f"DELETE FROM {DEFAULT} WHERE created_at < :c"), {"c": cutoff}).rowcount
    return dropped, deleted
