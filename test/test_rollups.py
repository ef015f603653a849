"""Per-minute rollups (nsm.telemetry.rollups) on the real PostgreSQL and on SQLite: each
robot-minute's rows, mean battery (unknown stays NULL), the control period's nearest-rank
p99 and max, episodes and last row match the same numbers computed here from the rows;
rolling a minute up again after late rows arrive corrects it."""
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select

from nsm.telemetry.db import connect
from nsm.telemetry.models import TelemetryMinute
from nsm.telemetry.rollups import roll_up
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

    roll_up(engine, T0, T0 + timedelta(minutes=2))
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

    # a spool replayed late: the minute is rolled up again and now counts the new rows
    late = robot_rows("EP01", 0, [200.0] * 40, [10.0], 0, 50_000)
    assert sink.write(late)
    roll_up(engine, T0, T0 + timedelta(minutes=1))
    with engine.connect() as conn:
        m = conn.execute(select(TelemetryMinute.__table__).where(TelemetryMinute.robot_id == "EP01")
                         .order_by(TelemetryMinute.minute)).first()
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
