"""Telemetry against the real PostgreSQL server: rows land, and an outage during the demo
neither stops nor slows the control loop — its rows are spooled and written later, once."""
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from nsm.app.demo import Demo
from nsm.app.demo_settings import demo_config
from nsm.telemetry.db import connect
from nsm.telemetry.writer import TelemetryWriter

pytestmark = pytest.mark.postgres


def counts(url):
    with connect(url).connect() as conn:
        return dict(conn.execute(text("SELECT data_type, count(DISTINCT seq) FROM robot_telemetry GROUP BY data_type")).all()), \
            conn.execute(text("SELECT count(*) - count(DISTINCT (robot_id, data_type, seq)) FROM robot_telemetry")).scalar()


def test_rows_land_as_jsonb_and_the_ai_query_works(pg_db, tmp_path):
    connect(pg_db)
    writer = TelemetryWriter(pg_db, "EP01", tmp_path / "spool")
    for i in range(1200):
        writer.log("battery", {"value": 100.0 - i / 100, "unit": "percent"})
    stats = writer.close()
    assert stats.written == 1200 and stats.spooled == 0
    with connect(pg_db).connect() as conn:
        kind = conn.execute(text("SELECT data_type FROM information_schema.columns WHERE table_name='robot_telemetry' AND "
                                 "column_name='payload'")).scalar()
        values = conn.execute(text("SELECT (payload->>'value')::float FROM robot_telemetry "
                                   "WHERE data_type='battery' AND robot_id='EP01' ORDER BY seq")).scalars().all()
    assert kind == "jsonb"
    assert values[0] == 100.0 and values[-1] == pytest.approx(88.01) and len(values) == 1200


def test_replaying_a_spooled_batch_never_duplicates(pg_db, tmp_path):
    """A batch written and also left in the spool (a crash between commit and unlink) is replayed harmlessly."""
    connect(pg_db)
    writer = TelemetryWriter(pg_db, "EP01", tmp_path / "spool")
    for i in range(10):
        writer.log("joint_states", {"i": i})
    assert writer.close().written == 10
    with connect(pg_db).connect() as conn:
        rows = conn.execute(text("SELECT robot_id, data_type, seq, payload::text, created_at FROM robot_telemetry")).all()
    (tmp_path / "spool" / "00000000000000000001.jsonl").write_text(
        "".join(json.dumps([r[0], r[1], r[2], r[3], r[4].isoformat()]) + "\n" for r in rows))
    again = TelemetryWriter(pg_db, "EP01", tmp_path / "spool")
    again.log("joint_states", {"i": 10})
    stats = again.close()
    assert stats.written == 11 and not list((tmp_path / "spool").glob("*.jsonl"))  # replayed, accepted, no-op
    assert counts(pg_db) == ({"joint_states": 11}, 0)


def test_outage_during_demo_keeps_the_loop_running_and_loses_nothing(pg_proxy_url, tmp_path):
    url, proxy, direct = pg_proxy_url
    demo = Demo(demo_config(seconds=4.0, out=tmp_path, db_url=url, camera=["wrist"]))

    def on_step(done):  # the database disappears at 1 s of robot time and is back at 2.5 s
        if done in (30, 75):
            threading.Thread(target=proxy.cut if done == 30 else proxy.restore).start()

    summary = demo.run(on_step)
    assert summary.frames == 120  # every control step ran
    assert summary.percentile(99) < 2 * 1000 / 30  # and none waited on the database
    assert summary.telemetry.failures >= 1 and summary.telemetry.spooled > 0  # the outage was real
    assert counts(direct) == ({"joint_states": 120, "joint_commands": 120, "loop_timing": 120, "battery": 4, "episode": 1}, 0)
    assert not list((tmp_path / "telemetry-spool").glob("*.jsonl"))


def test_a_batch_partly_stored_before_lands_once_and_payloads_arrive_as_sent(pg_db, tmp_path):
    """Batches go straight into the table by COPY; one that holds rows stored before (a batch sent
    again with new rows coalesced beside it) falls back to the merge: every row once, each payload
    the JSON the robot wrote; a payload that is not JSON refuses its batch and stores none of it."""
    import psycopg

    from nsm.telemetry.sinks import DatabaseSink

    connect(pg_db)
    sink = DatabaseSink(pg_db, tmp_path / "spool")
    now = datetime.now(UTC)
    payloads = ['{"value": 1.5}', '{"s": "tab\\there \\"quoted\\" \\\\ \\u00e9 \u00e9 \u6f22", "nested": {"a": [1, null]}}',
                '{"position": [0.1, -2e-05, 3.0], "velocity": [null]}']
    rows = [("EP07", "joint_states", seq, payloads[seq % 3], now + timedelta(milliseconds=seq)) for seq in range(10)]
    sink.insert(rows[:4])
    sink.insert(rows)  # 4 stored before, 6 new
    with pytest.raises(psycopg.DataError):
        sink.insert([("EP07", "joint_states", 10, '{"value": 2.0}', now), ("EP07", "joint_states", 11, "{not json", now)])
    with connect(pg_db).connect() as conn:
        stored = conn.execute(text("SELECT seq, payload FROM robot_telemetry WHERE robot_id = 'EP07' ORDER BY seq")).all()
    assert [seq for seq, _ in stored] == list(range(10))
    assert [payload for _, payload in stored] == [json.loads(payloads[seq % 3]) for seq in range(10)]
