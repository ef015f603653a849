"""Telemetry out of the database for training: the AI team's query, streamed.

    SELECT created_at, (payload->>'value')::float AS value FROM robot_telemetry
    WHERE robot_id = :robot AND data_type = :type ORDER BY created_at, seq

On PostgreSQL the rows leave the server through `COPY (query) TO STDOUT (FORMAT CSV)` and
are parsed by pyarrow's streaming CSV reader in blocks, so a parquet export of millions
of rows holds one block in memory at a time (`pandas.read_sql` builds Python objects per
row: measured ~5x slower). SQLite goes through pandas in chunks.
"""
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from nsm.telemetry.models import RobotTelemetry as T

BLOCK_BYTES = 8 * 2**20


def telemetry_query(robot_id: str, data_type: str, with_payload: bool = False):
    columns = [T.created_at, T.seq, T.payload["value"].as_float().label("value")]
    if with_payload:
        columns.append(T.payload.label("payload"))
    return (select(*columns).where(T.robot_id == robot_id, T.data_type == data_type)
            .order_by(T.created_at, T.seq))


class _CopyStream(io.RawIOBase):
    """A file-like view of psycopg's `COPY ... TO STDOUT` chunks, for pyarrow to read."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks, self._rest = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._rest:
            try:
                self._rest = bytes(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n], self._rest = self._rest[:n], self._rest[n:]
        return n


def iter_batches(engine: Engine, robot_id: str, data_type: str, with_payload: bool = False) -> Iterator[pa.RecordBatch]:
    """Record batches of the query's rows, in order, a block at a time."""
    query = telemetry_query(robot_id, data_type, with_payload)
    if engine.dialect.name != "postgresql":
        import pandas as pd

        with engine.connect() as conn:
            for chunk in pd.read_sql(query, conn, chunksize=100_000):
                chunk["created_at"] = pd.to_datetime(chunk["created_at"], utc=True)
                if with_payload:  # JSON text, as PostgreSQL's COPY gives it
                    chunk["payload"] = chunk["payload"].map(json.dumps)
                yield from pa.Table.from_pandas(chunk, preserve_index=False).to_batches()
        return
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            with cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT CSV, HEADER)") as copy:
                types = {"created_at": pa.timestamp("us", tz="UTC"), "seq": pa.int64(), "value": pa.float64()}
                reader = pa_csv.open_csv(io.BufferedReader(_CopyStream(iter(copy)), BLOCK_BYTES),
                                         read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
                                         convert_options=pa_csv.ConvertOptions(column_types=types))
                yield from reader
    finally:
        raw.close()


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
