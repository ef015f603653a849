"""Per-minute rollups of `robot_telemetry` into `telemetry_minute`: per robot and UTC minute
the rows, mean battery percent, the control period's p99 and max, episodes recorded and the
last row's time. The dashboard reads these (one row a robot-minute) instead of the ~5,500
raw rows behind each.

One SQL statement does it on PostgreSQL and on SQLite alike (window functions; the p99 is
the nearest-rank one: the smallest period with at least 99% of the minute's at or below
it), upserting, so rolling a minute up again after late rows arrived corrects it. `nsm
serve` rolls up the last few complete minutes once a minute (`keep_rolled_up`), in one of its
processes per database, on one core.

What that costs (bench/fleet.py, 300 robots, 2 cores): one round scans ~4.9 million rows,
~8 s of a core. Each of `nsm serve --workers 2`'s processes used to roll up the same minutes
at the same second, and PostgreSQL ran each statement on parallel workers: both cores gone for
seconds every minute, while the robots' batches waited for their commits.
"""
import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from nsm.telemetry.sinks import sql_time

log = logging.getLogger("nsm.rollups")
# Held by the one process that rolls up (a session advisory lock: released if that process or
# its connection dies, and another server process takes over within a round)
ROLLER_LOCK = "SELECT pg_try_advisory_lock(hashtext('nsm.telemetry.rollups'))"
# A round runs beside ingest: on one core (no parallel workers), sorting in memory, not on disk
ONE_CORE = ("SET LOCAL max_parallel_workers_per_gather = 0", "SET LOCAL work_mem = '64MB'")
LATE_MINUTES = 3  # minutes rolled up again each round: rows that arrive late (a robot's spool) still count

_MINUTE = {"postgresql": "date_trunc('minute', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
           "sqlite": "strftime('%Y-%m-%d %H:%M:00.000000', created_at)"}
_VALUE = {"postgresql": "(payload->>'value')::float", "sqlite": "json_extract(payload, '$.value')"}
_ROLL_UP = """
WITH r AS (
  SELECT robot_id, {minute} AS minute, data_type, created_at,
         CASE WHEN data_type IN ('battery', 'loop_timing') THEN {value} END AS value
  FROM robot_telemetry WHERE created_at >= :since AND created_at < :until),
ranked AS (
  SELECT robot_id, minute, value,
         row_number() OVER (PARTITION BY robot_id, minute ORDER BY value) AS k,
         count(*) OVER (PARTITION BY robot_id, minute) AS n
  FROM r WHERE data_type = 'loop_timing' AND value IS NOT NULL),
loop AS (
  SELECT robot_id, minute, min(value) AS p99, max(value) AS top FROM ranked WHERE k * 100 >= n * 99
  GROUP BY robot_id, minute)
INSERT INTO telemetry_minute (robot_id, minute, rows, battery, loop_ms_p99, loop_ms_max, episodes, last_at)
SELECT r.robot_id, r.minute, count(*), avg(CASE WHEN r.data_type = 'battery' THEN r.value END), l.p99, l.top,
       sum(CASE WHEN r.data_type = 'episode' THEN 1 ELSE 0 END), max(r.created_at)
FROM r LEFT JOIN loop l ON l.robot_id = r.robot_id AND l.minute = r.minute
WHERE true
GROUP BY r.robot_id, r.minute, l.p99, l.top
ON CONFLICT (robot_id, minute) DO UPDATE SET rows = excluded.rows, battery = excluded.battery,
  loop_ms_p99 = excluded.loop_ms_p99, loop_ms_max = excluded.loop_ms_max, episodes = excluded.episodes,
  last_at = excluded.last_at
"""


def minute_start(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(second=0, microsecond=0)


def roll_up(engine: Engine, since: datetime, until: datetime) -> None:
    """Roll up the whole minutes in [since, until) (UTC)."""
    since, until = minute_start(since), minute_start(until)
    dialect = engine.dialect.name
    sql = _ROLL_UP.format(minute=_MINUTE[dialect], value=_VALUE[dialect])
    bounds = {"since": sql_time(dialect, since), "until": sql_time(dialect, until)}
    with engine.begin() as conn:
        if dialect == "postgresql":
            for setting in ONE_CORE:
                conn.execute(text(setting))
        conn.execute(text(sql), bounds)


def keep_rolled_up(engine: Engine, every: float = 60.0) -> None:
    """Forever: once a minute (a few seconds past it), the last LATE_MINUTES complete minutes —
    on PostgreSQL only while this process holds the roller lock (one process per database
    rolls up; the others try again each round)."""
    locking = engine.dialect.name == "postgresql"
    holder = None  # the connection that holds the roller lock (PostgreSQL)
    while True:
        try:
            if locking and (holder is None or not _still_open(holder)):
                holder = _take_lock(engine)
            if holder is not None or not locking:  # else another process rolls up
                now = datetime.now(UTC)
                roll_up(engine, now - timedelta(minutes=LATE_MINUTES), now)
        except SQLAlchemyError as exc:  # the database is down: the next round covers these minutes too
            log.warning("rollups: %s", str(getattr(exc, "orig", exc)).splitlines()[0])
        time.sleep(every - time.time() % every + 2.0)


def _take_lock(engine: Engine):
    """A connection holding the roller lock, or None if another process holds it."""
    conn = engine.connect()
    try:
        held = conn.execute(text(ROLLER_LOCK)).scalar_one()
        conn.commit()
    except SQLAlchemyError:
        conn.close()
        raise
    if not held:
        conn.close()
        return None
    return conn


def _still_open(conn) -> bool:
    """Whether the lock's connection still answers (a restarted database dropped it, and the lock)."""
    try:
        conn.execute(text("SELECT 1"))
        conn.commit()
        return True
    except SQLAlchemyError:
        conn.invalidate()
        conn.close()
        return False
