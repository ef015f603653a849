"""Per-minute rollups of `robot_telemetry` into `telemetry_minute`: per robot and UTC minute
the rows, mean battery percent, the control period's p99 and max, episodes recorded and the
last row's time. The dashboard reads these (one row a robot-minute) instead of the ~5,500
raw rows behind each.

Which robot-minutes to roll up: every write of rows also notes the robot-minutes it touched
in `telemetry_minute_pending`, in the rows' transaction (nsm.telemetry.sinks). `nsm serve`,
once a minute (`keep_rolled_up`), takes the notes of the minutes that have ended, rolls up
those robot-minutes and deletes the notes, in one transaction: a spool replayed hours late is
counted (its write notes its old minutes again), and a round reads one minute of rows, not
the last three again as it once did for late rows (250 robots' rows, one round alone: 3.1-4.7
s of a core against 8.7-12.9; bench/fleet.py at 250 robots for 180 s, old and new alternated
twice: PostgreSQL's CPU 89.0 and 82.8 s before, 66.3 and 76.9 after).

One SQL statement does the rolling up on PostgreSQL and on SQLite alike (window functions; the
p99 is the nearest-rank one: the smallest period with at least 99% of the minute's at or below
it), upserting, so rolling a minute up again after late rows arrived corrects it. The rows are
aggregated per robot-minute before the p99s are joined in (joining first sorted every row of
the minute, on disk). It runs in one of `nsm serve`'s processes per database, on one core:
each of `nsm serve --workers 2`'s processes used to roll up the same minutes at the same
second, and PostgreSQL ran each statement on parallel workers, both cores gone for seconds
every minute while the robots' batches waited for their commits.
"""
import logging
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from nsm.telemetry.sinks import sql_time, utc_minute

log = logging.getLogger("nsm.rollups")
# Held by the one process that rolls up (a session advisory lock: released if that process or
# its connection dies, and another server process takes over within a round)
ROLLER_LOCK = "SELECT pg_try_advisory_lock(hashtext('nsm.telemetry.rollups'))"
# A round runs beside ingest: on one core (no parallel workers), sorting in memory, not on disk,
# and not compiling the statement each round (JIT: 0.6 s of a 5.7 s round at 250 robots)
ONE_CORE = ("SET LOCAL max_parallel_workers_per_gather = 0", "SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off")
# the notes of the minutes that have ended; a minute before 2 January of year 1 (a row's clock far
# off: PostgreSQL stores it, Python cannot read it) is deleted unread, never rolled up
_TAKE_PENDING = ("DELETE FROM telemetry_minute_pending WHERE minute < :before "
                 "RETURNING robot_id, CASE WHEN minute >= :floor THEN minute END")
_FLOOR = datetime(1, 1, 2, tzinfo=UTC)

_MINUTE = {"postgresql": "date_trunc('minute', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
           "sqlite": "strftime('%Y-%m-%d %H:%M:00.000000', created_at)"}
_VALUE = {"postgresql": "(payload->>'value')::float", "sqlite": "json_extract(payload, '$.value')"}
_ROLL_UP = """
WITH r AS (
  SELECT robot_id, {minute} AS minute, data_type, created_at,
         CASE WHEN data_type IN ('battery', 'loop_timing') THEN {value} END AS value
  FROM robot_telemetry WHERE created_at >= :since AND created_at < :until AND robot_id IN :robots),
ranked AS (
  SELECT robot_id, minute, value,
         row_number() OVER (PARTITION BY robot_id, minute ORDER BY value) AS k,
         count(*) OVER (PARTITION BY robot_id, minute) AS n
  FROM r WHERE data_type = 'loop_timing' AND value IS NOT NULL),
loop AS (
  SELECT robot_id, minute, min(value) AS p99, max(value) AS top FROM ranked WHERE k * 100 >= n * 99
  GROUP BY robot_id, minute),
agg AS (
  SELECT robot_id, minute, count(*) AS n, avg(CASE WHEN data_type = 'battery' THEN value END) AS battery,
         sum(CASE WHEN data_type = 'episode' THEN 1 ELSE 0 END) AS episodes, max(created_at) AS last_at
  FROM r GROUP BY robot_id, minute)
INSERT INTO telemetry_minute (robot_id, minute, rows, battery, loop_ms_p99, loop_ms_max, episodes, last_at)
SELECT a.robot_id, a.minute, a.n, a.battery, l.p99, l.top, a.episodes, a.last_at
FROM agg a LEFT JOIN loop l ON l.robot_id = a.robot_id AND l.minute = a.minute
WHERE true
ON CONFLICT (robot_id, minute) DO UPDATE SET rows = excluded.rows, battery = excluded.battery,
  loop_ms_p99 = excluded.loop_ms_p99, loop_ms_max = excluded.loop_ms_max, episodes = excluded.episodes,
  last_at = excluded.last_at
"""


def roll_up_pending(engine: Engine, now: datetime | None = None) -> int:
    """Roll up the noted robot-minutes that ended by `now` and delete their notes; how many.
    Consecutive minutes noted for the same robots go in one statement."""
    before = utc_minute(now or datetime.now(UTC))
    with engine.begin() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            for setting in ONE_CORE:
                conn.execute(text(setting))
        taken = conn.execute(text(_TAKE_PENDING), {"before": sql_time(dialect, before),
                                                   "floor": sql_time(dialect, _FLOOR)}).all()
        robots_by_minute = defaultdict(set)
        for robot, minute in taken:
            if minute is not None:
                robots_by_minute[_as_utc(minute)].add(robot)
        runs: list[tuple[datetime, datetime, frozenset]] = []
        for minute in sorted(robots_by_minute):
            robots = frozenset(robots_by_minute[minute])
            if runs and runs[-1][1] == minute and runs[-1][2] == robots:
                runs[-1] = (runs[-1][0], minute + timedelta(minutes=1), robots)
            else:
                runs.append((minute, minute + timedelta(minutes=1), robots))
        for since, until, robots in runs:
            _roll_up(conn, since, until, sorted(robots))
    return sum(len(robots) for robots in robots_by_minute.values())


def _roll_up(conn: Connection, since: datetime, until: datetime, robots: list[str]) -> None:
    """Roll up `robots`' whole minutes in [since, until) (UTC)."""
    dialect = conn.dialect.name
    sql = text(_ROLL_UP.format(minute=_MINUTE[dialect], value=_VALUE[dialect]))
    conn.execute(sql.bindparams(bindparam("robots", expanding=True)),
                 {"since": sql_time(dialect, since), "until": sql_time(dialect, until), "robots": robots})


def _as_utc(minute) -> datetime:
    """A noted minute as read back: PostgreSQL's aware datetime, SQLite's naive UTC text."""
    if isinstance(minute, str):
        minute = datetime.fromisoformat(minute)
    return minute.replace(tzinfo=UTC) if minute.tzinfo is None else minute.astimezone(UTC)


def keep_rolled_up(engine: Engine, every: float = 60.0) -> None:
    """Forever: once a minute (a few seconds past it), the noted robot-minutes that have ended —
    on PostgreSQL only while this process holds the roller lock (one process per database
    rolls up; the others try again each round)."""
    locking = engine.dialect.name == "postgresql"
    holder = None  # the connection that holds the roller lock (PostgreSQL)
    while True:
        try:
            if locking and (holder is None or not _still_open(holder)):
                holder = _take_lock(engine)
            if holder is not None or not locking:  # else another process rolls up
                roll_up_pending(engine)
        except SQLAlchemyError as exc:  # the database is down: the notes stay for the next round
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
