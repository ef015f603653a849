"""Telemetry throughput and export, side by side in one run, on a real PostgreSQL.

- rows/s into PostgreSQL: SQLAlchemy ORM row by row (`session.add` per row, commit per
  1000) vs nsm's TelemetryWriter (writer process, binary COPY + ON CONFLICT DO NOTHING);
- rows/s of the same writer into SQLite, and through the ingest service (`nsm serve`) beside
  straight into PostgreSQL: the same rows each way, alternated `--rounds` times (the VM's
  speed drifts within minutes), the best round of each compared (`http_vs_writer`) and the
  median of each round's ratio, the server's round over the direct one just before it
  (`http_vs_writer_paired`: on a VM whose speed swings within the run, the best rounds can
  fall in a fast minute for one path and a slow one for the other);
- exporting 1M rows of one data type: `pandas.read_sql` of the query vs nsm's
  `to_dataframe` (COPY TO STDOUT -> pyarrow).

Uses the server in NSM_TEST_PG_DSN, else starts a throwaway one (scripts/pg_throwaway.sh).

    .venv/bin/python bench/telemetry.py [--rows 200000] [--rounds 5] [--export-rows 1000000]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from pg import empty_table, fresh_database, postgres, start_service  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = {"position": [0.1, -0.2, 0.3, 0.4, -0.5, 0.6], "velocity": [0.0] * 6, "effort": [0.01] * 6}


def orm_rows_per_s(url: str, rows: int) -> float:
    from sqlalchemy.orm import Session

    from nsm.telemetry.db import connect
    from nsm.telemetry.models import RobotTelemetry

    engine = connect(url)
    started = time.perf_counter()
    with Session(engine) as session:
        for i in range(rows):
            session.add(RobotTelemetry(robot_id="ORM", data_type="joint_states", seq=i, payload=PAYLOAD,
                                       created_at=datetime.now(UTC)))
            if i % 1000 == 999:
                session.commit()
        session.commit()
    return rows / (time.perf_counter() - started)


def writer_rows_per_s(target: str, rows: int, robot: str, spool: Path) -> float:
    from nsm.telemetry.writer import open_writer

    writer = open_writer(target, robot, spool, batch_size=5000, flush_interval=0.2, max_buffer_bytes=2**30)
    started = time.perf_counter()
    for _ in range(rows):
        writer.log("joint_states", PAYLOAD)
    stats = writer.close(timeout=600)
    elapsed = time.perf_counter() - started
    assert stats.written == rows and stats.spooled == 0, stats
    return rows / elapsed


def export_seconds(url: str, robot: str) -> dict:
    import pandas as pd

    from nsm.telemetry.db import connect
    from nsm.telemetry.export import telemetry_query, to_dataframe

    engine = connect(url)
    timings = {}
    for name in ("pandas.read_sql", "nsm to_dataframe", "pandas.read_sql ", "nsm to_dataframe "):  # twice, interleaved
        started = time.perf_counter()
        if name.startswith("pandas"):
            with engine.connect() as conn:
                df = pd.read_sql(telemetry_query(robot, "joint_states"), conn)
        else:
            df = to_dataframe(engine, robot, "joint_states")
        timings.setdefault(name.strip(), []).append(time.perf_counter() - started)
        rows = len(df)
    return {name: round(min(t), 2) for name, t in timings.items()} | {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternated runs of the writer direct and through nsm serve")
    parser.add_argument("--orm-rows", type=int, default=20_000)
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nsm-bench-"))
    try:
        with postgres(55990) as dsn:
            run(args, fresh_database(dsn), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, url: str, tmp: Path) -> None:
    orm = orm_rows_per_s(url, args.orm_rows)
    sqlite = writer_rows_per_s(f"sqlite:///{tmp / 'bench.db'}", args.rows, "NSM", tmp / "spool-sqlite")
    service, service_url = start_service(url, "bench")
    os.environ["BACKEND_API_TOKEN"] = "bench"
    # The writer straight into PostgreSQL and through `nsm serve`, the same rows each, alternated
    # (the VM's speed drifts within minutes): each path's rounds, and its best. Each run starts
    # on an empty table: on a growing one each run was slower than the last (its index outgrowing
    # the cache; 82,666 -> 41,170 rows/s direct over five rounds), which put whichever path ran
    # second in a round at a disadvantage.
    targets = {"postgres nsm writer": url, "http ingest -> postgres": service_url}
    rounds: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for i in range(args.rounds):
            for name, target in targets.items():
                empty_table(url)
                rounds[name].append(writer_rows_per_s(target, args.rows, f"{name[:4]}{i}", tmp / f"spool-{name[:4]}{i}"))
    finally:
        service.terminate()
        service.wait()
    ours, http = (max(runs) for runs in rounds.values())
    writer_rows_per_s(url, args.export_rows, "EXPORT", tmp / "spool-export")
    export = export_seconds(url, "EXPORT")
    results = {
        "insert_rows_per_s": {"postgres ORM row by row": round(orm), "postgres nsm writer": round(ours),
                              "sqlite nsm writer": round(sqlite), "http ingest -> postgres": round(http)},
        "rounds_rows_per_s": {name: [round(r) for r in runs] for name, runs in rounds.items()},
        "http_vs_writer": round(http / ours, 3),
        "http_vs_writer_paired": round(statistics.median(h / d for d, h in zip(*rounds.values(), strict=True)), 3),
        "writer_vs_orm": round(ours / orm, 1),
        "export_1M_seconds": export,
        "export_speedup_vs_read_sql": round(export["pandas.read_sql"] / export["nsm to_dataframe"], 1),
        "rows": {"orm": args.orm_rows, "writer": args.rows, "http": args.rows, "export": args.export_rows},
    }
    for key, value in results.items():
        print(f"{key}: {value}")
    print(f"wrote {write_result('telemetry', results)}")


if __name__ == "__main__":
    main()
