"""robot_telemetry partitioned by day on the real PostgreSQL (migration 0003,
nsm.telemetry.partitions): the migration keeps every row both ways, the idempotency key still
holds, rows without a day partition wait in the default one and move when it is made, prune
drops only the old days, export reads across partitions."""
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect, text

from nsm.telemetry.db import connect, downgrade, upgrade
from nsm.telemetry.export import to_dataframe
from nsm.telemetry.partitions import DEFAULT, day_partitions, ensure_days, is_partitioned, partition_name
from nsm.telemetry.sinks import DatabaseSink

pytestmark = pytest.mark.postgres
NOW = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)  # no day boundary in reach
AGES = (40, 35, 1, 0)  # days before today


def batch(robot="EP01", first=0):
    """20 battery rows on each of the AGES' days."""
    return [(robot, "battery", first + 100 * k + i, f'{{"value": {i}}}', NOW - timedelta(days=age, minutes=i))
            for k, age in enumerate(AGES) for i in range(20)]


def count(conn, table="robot_telemetry") -> int:
    return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_migration_partitions_every_row_and_back(pg_db, tmp_path):
    engine = connect(pg_db, migrate=False)
    assert upgrade(engine, "0002") == "0002"
    with engine.begin() as conn:  # the rows as nsm wrote them at 0002 (today's sink also notes rollups: 0005)
        conn.execute(text("INSERT INTO robot_telemetry (robot_id, data_type, seq, payload, created_at) "
                          "VALUES (:r, :t, :s, CAST(:p AS jsonb), :c)"),
                     [dict(zip("rtspc", row, strict=True)) for row in batch() + batch("EP02")])
    with engine.connect() as conn:
        before = conn.execute(text("SELECT id, robot_id, seq, payload, created_at FROM robot_telemetry ORDER BY id")).all()
    assert len(before) == 160

    assert upgrade(engine, "0003") == "0003"
    with engine.connect() as conn:
        assert is_partitioned(conn)
        today = NOW.date()
        days = day_partitions(conn)
        assert {today - timedelta(days=a) for a in AGES} | {today + timedelta(days=k) for k in range(8)} <= set(days)
        after = conn.execute(text("SELECT id, robot_id, seq, payload, created_at FROM robot_telemetry ORDER BY id")).all()
        assert after == before and count(conn, DEFAULT) == 0  # every row, in its day's table
        assert count(conn, partition_name(today - timedelta(days=40))) == 40
        indexes = {i["name"]: i for i in inspect(conn).get_indexes("robot_telemetry")}
        assert "ix_robot_telemetry_created_at_brin" in indexes
    upgrade(engine)
    sink = DatabaseSink(pg_db, tmp_path / "spool")
    assert sink.write(batch()) and sink.write(batch()[:5])  # retried rows: stored once
    with engine.connect() as conn:
        assert count(conn) == 160
    assert sink.write([("EP01", "battery", 10_000, '{"value": 1}', NOW)])  # the id sequence went on (no reuse)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM robot_telemetry WHERE seq = 10000")).scalar_one() > before[-1].id
    frame = to_dataframe(engine, "EP01", "battery")
    assert len(frame) == 81 and frame["seq"].is_monotonic_increasing and frame["created_at"].dt.date.nunique() == 4

    assert downgrade(engine, "0002") == "0002"
    with engine.connect() as conn:
        assert not is_partitioned(conn) and count(conn) == 161
        unique = inspect(conn).get_unique_constraints("robot_telemetry")
        assert [sorted(u["column_names"]) for u in unique] == [["data_type", "robot_id", "seq"]]


def test_rows_beyond_the_made_days_wait_in_the_default_partition_and_prune_drops_old_days(pg_db, tmp_path):
    engine = connect(pg_db)  # to head: partitioned, today and the next 7 days made
    sink = DatabaseSink(pg_db, tmp_path / "spool")
    later = NOW + timedelta(days=30)
    assert sink.write(batch() + [("EP01", "battery", 5000, '{"value": 1}', later)])
    with engine.connect() as conn:
        assert count(conn, DEFAULT) == 61  # the 40, 35 and 1 days ago and the one 30 days ahead: no day tables
    made = ensure_days(engine, days_ahead=0, today=later.date())
    assert made == [partition_name(later.date())]
    with engine.connect() as conn:
        assert count(conn, DEFAULT) == 60 and count(conn, made[0]) == 1  # moved into its new day
    for age in (40, 35, 1):
        ensure_days(engine, days_ahead=0, today=(NOW - timedelta(days=age)).date())
    with engine.connect() as conn:
        assert count(conn, DEFAULT) == 0 and count(conn) == 81

    out = subprocess.run([sys.executable, "-m", "nsm.cli", "db", "prune", "--older-than", "30d", "--db-url", pg_db],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    old = [partition_name((NOW - timedelta(days=a)).date()) for a in (40, 35)]
    assert f"dropped 2 day partitions ({', '.join(old)})" in out.stdout
    with engine.connect() as conn:
        assert count(conn) == 41 and not set(old) & set(day_partitions(conn).values())
        assert conn.execute(text("SELECT min(created_at) FROM robot_telemetry")).scalar_one() > NOW - timedelta(days=2)
        noted = conn.execute(text("SELECT min(minute) FROM telemetry_minute_pending")).scalar_one()
        assert noted == NOW - timedelta(days=1, minutes=19)  # the notes of the 40 and 35 days ago gone
    bad = subprocess.run([sys.executable, "-m", "nsm.cli", "db", "prune", "--older-than", "a month", "--db-url", pg_db],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "e.g. 30d" in bad.stdout + bad.stderr


def test_sqlite_keeps_one_table_and_prune_deletes_rows(tmp_path):
    url = f"sqlite:///{tmp_path / 't.db'}"
    engine = connect(url)
    sink = DatabaseSink(url, tmp_path / "spool")
    assert sink.write(batch())
    from nsm.telemetry.partitions import prune

    with engine.connect() as conn:
        assert not is_partitioned(conn) and count(conn) == 80
    assert prune(engine, timedelta(days=30)) == ([], 40)
    with engine.connect() as conn:
        assert count(conn, "telemetry_minute_pending") == 40  # 20 minutes of each of the 2 days kept
    with engine.connect() as conn:
        assert count(conn) == 40
