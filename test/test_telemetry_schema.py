"""Migrations bring an empty SQLite or PostgreSQL to head; export implements the AI team's
query; odd input is stored verbatim."""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sqlalchemy import inspect, text

from nsm.telemetry.db import connect, current_revision, downgrade, upgrade
from nsm.telemetry.export import export_parquet, to_dataframe
from nsm.telemetry.writer import TelemetryWriter

TABLES = {"robot_telemetry", "episodes", "predictions", "api_tokens", "telemetry_minute",
          "telemetry_minute_pending"}
SQLISH = "EP01'; DROP TABLE robot_telemetry; --"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'telemetry.db'}"
    return request.getfixturevalue("pg_db")


def test_upgrade_brings_an_empty_database_to_head(db_url):
    engine = connect(db_url, migrate=False)
    assert current_revision(engine) is None and not TABLES & set(inspect(engine).get_table_names())
    assert upgrade(engine) == "0005"
    assert TABLES <= set(inspect(engine).get_table_names())
    unique = inspect(engine).get_unique_constraints("robot_telemetry")
    key = ["created_at", "data_type", "robot_id", "seq"] if "postgresql" in db_url else ["data_type", "robot_id", "seq"]
    assert [sorted(u["column_names"]) for u in unique] == [key]  # PostgreSQL's is partitioned by day (test_partitions)
    assert upgrade(engine) == "0005"  # idempotent
    assert downgrade(engine, "0001") == "0001" and "api_tokens" not in inspect(engine).get_table_names()
    assert downgrade(engine, "base") is None
    assert not TABLES & set(inspect(engine).get_table_names())


def test_cli_db_upgrade(db_url):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "nsm.cli", "db", "upgrade", "--db-url", db_url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "database at revision 0005" in out.stdout, out.stderr


def test_export_is_the_ai_query_and_keeps_input_verbatim(db_url, tmp_path):
    connect(db_url)
    writer = TelemetryWriter(db_url, SQLISH, tmp_path / "spool", batch_size=400)
    for i in range(1000):
        writer.log("battery", {"value": 100 - i / 10, "note": "'; DELETE FROM episodes; -- ✓"})
        writer.log("joint_states", {"position": [i]})
    assert writer.close().written == 2000

    df = to_dataframe(connect(db_url), SQLISH, "battery", with_payload=True)
    assert list(df.columns) == ["created_at", "seq", "value", "payload"] and len(df) == 1000
    assert df["value"].iloc[0] == 100.0 and df["value"].iloc[-1] == pytest.approx(0.1)
    assert df["created_at"].is_monotonic_increasing and str(df["created_at"].dt.tz) == "UTC"
    assert json.loads(df["payload"].iloc[0])["note"] == "'; DELETE FROM episodes; -- ✓"
    with connect(db_url).connect() as conn:  # the same numbers as the query the AI team runs by hand
        cast = "(payload->>'value')::float" if "postgresql" in db_url else "CAST(payload->>'value' AS REAL)"
        direct = conn.execute(text(f"SELECT {cast} FROM robot_telemetry WHERE data_type='battery' AND robot_id=:r "
                                   "ORDER BY created_at, seq"), {"r": SQLISH}).scalars().all()
    assert direct == df["value"].tolist()

    out = tmp_path / "battery.parquet"
    assert export_parquet(connect(db_url), SQLISH, "battery", out) == 1000
    table = pq.read_table(out)
    assert table.column_names == ["created_at", "seq", "value"] and table.num_rows == 1000
    assert to_dataframe(connect(db_url), "nobody", "battery").empty


def test_to_dataframe_empty_has_the_columns(tmp_path):
    df = to_dataframe(connect(f"sqlite:///{tmp_path / 'e.db'}"), "EP01", "battery")
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["created_at", "seq", "value"] and df.empty


def test_spool_is_bounded_and_drops_the_oldest_batches(tmp_path):
    """An unreachable target: every batch is spooled, and past the limit the oldest go first."""
    from datetime import UTC, datetime

    from nsm.telemetry.sinks import DatabaseSink

    sink = DatabaseSink("postgresql://nobody@127.0.0.1:1/none", tmp_path / "spool", max_spool_bytes=3000)
    for b in range(10):
        assert not sink.flush([("EP01", "battery", b * 10 + i, json.dumps({"value": i}), datetime.now(UTC))
                               for i in range(10)])
    files = sorted((tmp_path / "spool").glob("*.jsonl"))
    assert sum(f.stat().st_size for f in files) <= 3000 and sink.stats.spooled == 100
    assert sink.stats.spool_dropped == 100 - 10 * len(files) and sink.stats.spool_dropped > 0
    kept = [json.loads(line)[2] for f in files for line in f.open()]
    assert kept == list(range(100 - len(kept), 100))  # the newest rows survive, in order
    assert "spool over 3000 bytes" in sink.stats.last_error


def test_an_idle_writer_process_sleeps(tmp_path):
    """Between rows the writer process waits in select(); it must not spin on a core the robot needs."""
    import os
    import time

    def cpu_seconds(pid):
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    url = f"sqlite:///{tmp_path / 'idle.db'}"
    connect(url)
    writer = TelemetryWriter(url, "EP01", tmp_path / "spool", flush_interval=0.05)
    before = cpu_seconds(writer._process.pid)
    for i in range(40):  # a trickle of rows, then nothing
        writer.log("battery", {"value": float(i)})
        time.sleep(0.025)
    time.sleep(1.0)
    used = cpu_seconds(writer._process.pid) - before
    assert writer.close().written == 40
    assert used < 0.5, f"the writer process used {used:.2f} s of CPU in 2 s of near-idleness"


def test_every_row_builder_matches_the_ingest_schema():
    """The payloads nsm logs are the ones `nsm serve` accepts; unknown values are JSON null."""
    import orjson

    from nsm.telemetry import rows
    from nsm.telemetry.ingest import BatchError, parse_batch

    def batch(*typed) -> bytes:
        return orjson.dumps({"robot_id": "R1", "rows": [{"data_type": t, "seq": seq, "payload": p,
                                                          "created_at": "2026-11-25T13:00:00+00:00"}
                                                         for seq, (t, p) in enumerate(typed)]})

    names = ["a", "b"]
    built = {"joint_states": rows.joint_states(names, [0.1, 0.2], [0.0, float("nan")], [1.0, 2.0]),
             "joint_commands": rows.joint_commands(names, np.array([0.1, 0.2])),
             "battery": rows.battery(12.1, float("nan"), float("nan")),
             "loop_timing": rows.loop_timing(0.0334, 0.002, 7),
             "episode": rows.episode("runs/demo/episodes/episode_0000.hdf5", None, 300, 10.0, "expert")}
    robot_id, parsed = parse_batch(batch(*built.items()))  # what the writer sends
    assert robot_id == "R1" and [orjson.loads(r[3]) for r in parsed] == list(built.values())
    assert built["battery"]["value"] is None and built["battery"]["current"] is None
    assert built["battery"]["voltage"] == 12.1 and built["joint_states"]["velocity"] == [0.0, None]
    with pytest.raises(BatchError) as refused:  # the second row's schema fails, named by its place in the batch
        parse_batch(batch(("battery", {"value": 50.0}), ("joint_states", {"velocity": []})))
    assert [e["loc"] for e in refused.value.errors] == [("rows", 1, "payload", "position")]
    # a data type without a schema must still be a name (SQL, paths and the dashboard show it) and hold an object
    assert [r[1] for r in parse_batch(batch(("x.y:z-1", {"a": 1}), ("battery", {"value": 1.0})))[1]] == ["x.y:z-1", "battery"]
    with pytest.raises(BatchError) as refused:
        parse_batch(batch(("battery", {"value": 1.0}), ("bad name", {"a": 1}), ("note", [1]), ("-x", {})))
    assert [e["loc"] for e in refused.value.errors] == [("rows", 1, "data_type"), ("rows", 2, "payload"),
                                                        ("rows", 3, "data_type")]
    assert "matching regex" in refused.value.errors[0]["msg"]
