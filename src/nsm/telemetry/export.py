"""Telemetry out of the database for training: the AI team's query, streamed.

    SELECT created_at, seq, (payload->>'value')::float AS value FROM robot_telemetry
    WHERE robot_id = :robot AND data_type = :type ORDER BY seq

in the order the robot logged the rows (`seq`; the unique key's index returns them in
that order without a sort).

On PostgreSQL the rows come through ADBC (the Arrow project's database driver: binary COPY
decoded in C straight into Arrow record batches), a batch at a time, so a parquet export
of millions of rows needs little memory and `pandas.read_sql`'s Python object per value
is avoided. SQLite goes through pandas in chunks.
"""
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql

from nsm.telemetry.models import RobotTelemetry as T


def telemetry_query(robot_id: str, data_type: str, with_payload: bool = False):
    columns = [T.created_at, T.seq, T.payload["value"].as_float().label("value")]
    if with_payload:
        columns.append(T.payload.label("payload"))
    return (select(*columns).where(T.robot_id == robot_id, T.data_type == data_type)
            .order_by(T.seq))


def iter_batches(engine: Engine, robot_id: str, data_type: str, with_payload: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of the query's rows, in order, a batch at a time."""
    query = telemetry_query(robot_id, data_type, with_payload)
    if engine.dialect.name != "postgresql":
        import pandas as pd

        with engine.connect() as conn:
            for chunk in pd.read_sql(query, conn, chunksize=100_000):
                chunk["created_at"] = pd.to_datetime(chunk["created_at"], utc=True)
                if with_payload:  # JSON text, as on PostgreSQL
                    chunk["payload"] = chunk["payload"].map(json.dumps)
                yield from pa.Table.from_pandas(chunk, preserve_index=False).to_batches()
        return
    import adbc_driver_postgresql.dbapi as adbc

    sql = query.compile(dialect=postgresql.dialect(paramstyle="numeric_dollar"))
    libpq_url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc.connect(libpq_url) as conn, conn.cursor() as cur:
        cur.execute(sql.string, [sql.params[name] for name in sql.positiontup])
        for batch in cur.fetch_record_batch():
            if with_payload:  # arrow.json extension -> its plain JSON text
                i = batch.schema.get_field_index("payload")
                batch = batch.set_column(i, "payload", batch.column(i).storage)
            yield batch


def to_dataframe(engine: Engine, robot_id: str, data_type: str, with_payload: bool = False):
    """The query's rows as a pandas DataFrame (created_at UTC, seq, value[, payload])."""
    batches = list(iter_batches(engine, robot_id, data_type, with_payload))
    if not batches:
        import pandas as pd

        return pd.DataFrame({"created_at": pd.Series(dtype="datetime64[us, UTC]"), "seq": pd.Series(dtype="int64"),
                             "value": pd.Series(dtype="float64")})
    return pa.Table.from_batches(batches).to_pandas()


def export_parquet(engine: Engine, robot_id: str, data_type: str, out: Path, with_payload: bool = False,
                   on_rows=None) -> int:
    """Stream the query into a parquet file; returns the number of rows written."""
    rows, writer = 0, None
    try:
        for batch in iter_batches(engine, robot_id, data_type, with_payload):
            if writer is None:
                out.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(out, batch.schema)
            writer.write_batch(batch)
            rows += batch.num_rows
            if on_rows is not None:
                on_rows(rows)
    finally:
        if writer is not None:
            writer.close()
    return rows
