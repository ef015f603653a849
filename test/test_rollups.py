"""Per-minute rollups (nsm.telemetry.rollups) on the real PostgreSQL and on SQLite: each
robot-minute's rows, mean battery (unknown stays NULL), the control period's nearest-rank
p99 and max, episodes and last row match the same numbers computed here from the rows;
a round rolls up only the robot-minutes written since the last one, a minute still under
way waits, and rows that arrive a day late correct their minute."""
import json
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from sqlalchemy import func, inspect, select, text

from nsm.telemetry.db import connect
from nsm.telemetry.models import TelemetryMinute
from nsm.telemetry.rollups import roll_up_pending
from nsm.telemetry.sinks import DatabaseSink

T0 = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=1)


def robot_rows(robot: str, minute: int, periods: list[float], battery: list[float | None], episodes: int,
               first_seq: int) -> list[tuple]:
    start = T0 + timedelta(minutes=minute)
    out = [(robot, "loop_timing", first_seq + i, json.dumps({"value": p, "step": i}),
            start + timedelta(seconds=59.0 * i / len(periods))) for i, p in enumerate(periods)]
    out += [(robot, "battery", first_seq + i, json.dumps({"value": b, "unit": "percent"}),
             start + timedelta(seconds=2 * i + 0.5)) for i, b in enumerate(battery)]
    out += [(robot, "episode", first_seq + i, json.dumps({"success": True, "frames": 300}),
             start + timedelta(seconds=10 * i + 1)) for i in range(episodes)]
    return out


def nearest_rank_p99(values) -> float:
    return float(np.percentile(values, 99, method="inverted_cdf"))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    return f"sqlite:///{tmp_path / 'rollups.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_db")


def test_minutes_roll_up_to_what_the_rows_say_and_late_rows_correct_them(db_url, tmp_path):
    engine = connect(db_url)
    sink = DatabaseSink(db_url, tmp_path / "spool")
    rng = np.random.default_rng(7)
    periods = {(r, m): list(33.3 + rng.exponential(0.3, 1800)) for r in ("EP01", "EP02") for m in (0, 1)}
    periods["EP01", 0][123] = 95.0  # one overrun: the max, not the p99
    batteries = {("EP01", 0): [80.0, 79.5, None], ("EP01", 1): [79.0], ("EP02", 0): [None, None], ("EP02", 1): []}
    rows = []
    for (robot, minute), values in periods.items():
        rows += robot_rows(robot, minute, values, batteries[robot, minute], 2 if (robot, minute) == ("EP02", 1) else 0,
                           10_000 * minute)
    assert sink.write(rows)
    now = datetime.now(UTC)
    assert sink.write([("EP03", "battery", 1, json.dumps({"value": 50.0}), now)])  # a minute still under way

    assert roll_up_pending(engine, now) == 4  # EP01 and EP02, two minutes each; EP03's minute has not ended
    assert roll_up_pending(engine, now) == 0  # nothing written since
    with engine.connect() as conn:
        got = {(m.robot_id, m.minute.replace(tzinfo=UTC) if m.minute.tzinfo is None else m.minute): m
               for m in conn.execute(select(TelemetryMinute.__table__)).all()}
    assert len(got) == 4
    for (robot, minute), values in periods.items():
        m = got[robot, T0 + timedelta(minutes=minute)]
        known = [b for b in batteries[robot, minute] if b is not None]
        assert m.rows == len(values) + len(batteries[robot, minute]) + m.episodes
        assert m.loop_ms_p99 == pytest.approx(nearest_rank_p99(values), abs=1e-9)
        assert m.loop_ms_max == pytest.approx(max(values), abs=1e-9)
        assert m.battery == (pytest.approx(np.mean(known)) if known else None)
    assert got["EP01", T0].loop_ms_max == 95.0 and got["EP01", T0].loop_ms_p99 < 40.0
    assert got["EP02", T0 + timedelta(minutes=1)].episodes == 2 and got["EP01", T0].episodes == 0

    # a spool replayed a day late: that robot-minute alone is rolled up again and counts the new rows
    late = robot_rows("EP01", 0, [200.0] * 40, [10.0], 0, 50_000)
    assert sink.write(late)
    assert roll_up_pending(engine, now) == 1
    with engine.connect() as conn:
        m = conn.execute(select(TelemetryMinute.__table__).where(TelemetryMinute.robot_id == "EP01")
                         .order_by(TelemetryMinute.minute)).first()
        assert conn.execute(select(func.count()).select_from(TelemetryMinute.__table__)).scalar_one() == 4
        assert conn.execute(text("SELECT robot_id FROM telemetry_minute_pending")).scalars().all() == ["EP03"]
    assert m.rows == got["EP01", T0].rows + 41
    assert m.loop_ms_p99 == pytest.approx(nearest_rank_p99(periods["EP01", 0] + [200.0] * 40))
    assert m.battery == pytest.approx(np.mean([80.0, 79.5, 10.0]))


def test_one_process_per_database_rolls_up_and_another_takes_over_when_it_goes(pg_db):
    """nsm serve's workers (or several servers) would each scan the same minutes at the same
    second: only the holder of the roller lock rolls up; when its connection dies (the process
    gone, the database restarted) the next process to try takes the lock."""
    from sqlalchemy import text

    from nsm.telemetry.rollups import _still_open, _take_lock

    first, second = connect(pg_db), connect(pg_db)
    holder = _take_lock(first)
    assert holder is not None and _still_open(holder)
    assert _take_lock(second) is None  # another worker: skips the round
    with second.connect() as admin:  # the holder's backend ends (a crash, a database restart)
        pid = holder.execute(text("SELECT pg_backend_pid()")).scalar_one()
        holder.commit()
        admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
    assert not _still_open(holder)
    taken = _take_lock(second)
    assert taken is not None
    assert _take_lock(first) is None
    taken.close()


def test_the_upgrade_notes_the_minutes_the_rollups_before_it_would_still_have_rolled_up(db_url):
    """Before revision 0005 a round re-rolled the last three minutes; the upgrade notes the rows
    of the last five (two robots here), not older ones, and downgrading drops the notes."""
    from nsm.telemetry.db import downgrade, upgrade
    from nsm.telemetry.sinks import sql_time

    engine = connect(db_url, migrate=False)
    assert upgrade(engine, "0004") == "0004"
    now = datetime.now(UTC)
    rows = [("EP01", now - timedelta(seconds=30)), ("EP02", now - timedelta(minutes=3)), ("EP03", now - timedelta(hours=1))]
    with engine.begin() as conn:
        payload = "CAST(:p AS jsonb)" if engine.dialect.name == "postgresql" else ":p"
        conn.execute(text("INSERT INTO robot_telemetry (robot_id, data_type, seq, payload, created_at) "
                          f"VALUES (:r, 'battery', 1, {payload}, :c)"),
                     [{"r": robot, "p": '{"value": 50}', "c": sql_time(engine.dialect.name, t)} for robot, t in rows])
    assert upgrade(engine) == "0005"
    with engine.connect() as conn:
        noted = conn.execute(text("SELECT robot_id FROM telemetry_minute_pending ORDER BY robot_id")).scalars().all()
    assert noted == ["EP01", "EP02"]
    assert roll_up_pending(engine, now + timedelta(minutes=1)) == 2
    assert downgrade(engine, "0004") == "0004"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(TelemetryMinute.__table__)).scalar_one() == 2
    assert "telemetry_minute_pending" not in inspect(engine).get_table_names()


def test_rows_at_the_ends_of_time_do_not_stop_the_rollups(db_url, tmp_path):
    """A robot's clock far off (found by test_ingest_fuzz): rows of year 1 in an offset east of
    UTC (1 BC in UTC, which PostgreSQL stores and Python cannot read) and of year 9999 are stored
    and noted, and a round still rolls up the others."""
    from datetime import timezone

    engine = connect(db_url)
    sink = DatabaseSink(db_url, tmp_path / "spool")
    east, west = timezone(timedelta(hours=5)), timezone(timedelta(hours=-5))
    odd = [("EP01", "battery", 1, '{"value": 1}', datetime(1, 1, 1, 0, 0, tzinfo=east)),
           ("EP01", "battery", 2, '{"value": 1}', datetime(9999, 12, 31, 23, 59, tzinfo=west))]
    assert sink.write(odd + robot_rows("EP02", 0, [33.3] * 10, [50.0], 0, 0))
    assert roll_up_pending(engine) == 1  # EP02's minute; the year-1 note deleted unread, year 9999's waits
    with engine.connect() as conn:
        assert conn.execute(select(TelemetryMinute.robot_id)).scalars().all() == ["EP02"]


def test_rows_stamped_in_another_offset_are_stored_and_rolled_up_in_utc(db_url, tmp_path):
    """created_at as the robot sent it, 12:00 at +05:00: stored as 07:00 UTC (SQLite keeps UTC
    text, as SQLAlchemy does) and rolled up in the 07:00 minute."""
    engine = connect(db_url)
    sink = DatabaseSink(db_url, tmp_path / "spool")
    local = datetime(2026, 11, 30, 12, 0, 30, tzinfo=timezone(timedelta(hours=5)))
    assert sink.write([("EP01", "battery", 1, json.dumps({"value": 42.0}), local)])
    assert roll_up_pending(engine) == 1
    with engine.connect() as conn:
        m = conn.execute(select(TelemetryMinute.__table__)).one()
        stored = conn.execute(text("SELECT created_at FROM robot_telemetry")).scalar_one()
    utc = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert (m.minute.replace(tzinfo=UTC) if m.minute.tzinfo is None else m.minute) == utc and m.battery == 42.0
    assert str(stored).startswith("2026-11-30 07:00:30")
