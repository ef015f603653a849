"""Where the writer process puts batches: the database, or the ingest service; the spool
in between while the target is unreachable.

A batch is a list of rows `(robot_id, data_type, seq, payload JSON text, created_at)`.

- DatabaseSink: on PostgreSQL one binary COPY straight into the table; only if that hits the
  unique key (a batch sent again: its answer was lost, or a spool replayed) is the batch
  copied into a temporary staging table and merged with `INSERT ... SELECT ... ON CONFLICT
  DO NOTHING` (measured ~10x the ORM row by row; the straight COPY skips the staging table's
  write and read). On SQLite an executemany of `INSERT ... ON CONFLICT DO NOTHING`. The
  unique key (robot_id, data_type, seq; with created_at on PostgreSQL's table partitioned
  by day, which a retried row repeats) makes replaying a batch harmless. In the same
  transaction the write notes the robot-minutes it touched in `telemetry_minute_pending`,
  which the rollups read (nsm.telemetry.rollups): a batch and its note commit together.
- HttpSink: POSTs the batch to `nsm serve` (bearer token from BACKEND_API_TOKEN); the
  service writes it through a DatabaseSink, so retries are just as harmless. With
  `in_flight` > 1 (the writer process with a backlog) the next batches are sent while the
  server still commits the last, so it parses some while its database writes others; a
  batch is spooled if its answer, when it comes, is an error.

Spool: one JSON-lines file per batch, replayed oldest first before any new rows once the
target answers; it survives restarts. It is bounded (`max_spool_bytes`): when full the
oldest batches are deleted and counted in `stats.spool_dropped` — after a long outage
the newest telemetry matters most, and the disk that holds the episodes must not fill.
"""
import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import orjson
import psycopg
from psycopg.types.json import set_json_dumps
from sqlalchemy.exc import SQLAlchemyError

from nsm.telemetry.db import make_engine

_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS nsm_stage (robot_id text, data_type text, seq bigint, payload text, "
          "created_at timestamptz) ON COMMIT DELETE ROWS")
_COLUMNS = "(robot_id, data_type, seq, payload, created_at)"
_COPY = f"COPY robot_telemetry {_COLUMNS} FROM STDIN (FORMAT BINARY)"
_STAGE_COPY = f"COPY nsm_stage {_COLUMNS} FROM STDIN (FORMAT BINARY)"
_MERGE = (f"INSERT INTO robot_telemetry {_COLUMNS} "
          "SELECT robot_id, data_type, seq, payload::jsonb, created_at FROM nsm_stage "
          "ON CONFLICT DO NOTHING")  # the unique key of either schema (nsm.telemetry.partitions)
_SQLITE_INSERT = (f"INSERT INTO robot_telemetry {_COLUMNS} VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT (robot_id, data_type, seq) DO NOTHING")
# the robot-minutes a write touched, for the rollups (nsm.telemetry.rollups), in the rows' transaction
# (VALUES, not unnest of two arrays: a robot writing straight into PostgreSQL notes one pair a
# write, and adapting the arrays cost it ~70 us of CPU more a write)
_NOTE = "INSERT INTO telemetry_minute_pending (robot_id, minute) VALUES "
_SQLITE_NOTE = _NOTE + "(?, ?)"
_ROBOT, _CREATED = itemgetter(0), itemgetter(4)
_ONE, _SPAN = timedelta(minutes=1), timedelta(minutes=5)
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite (UTC, naive)
TOKEN_ENV = "BACKEND_API_TOKEN"
INGEST_PATH = "/v1/telemetry"


def _as_is(payload: str) -> str:
    """A payload is JSON text already (as the robot wrote it): sent to jsonb unchanged."""
    return payload


def _copy(cur, sql: str, payload_type: str, batch: list[tuple]) -> None:
    """One binary COPY of `batch`; the payload column as `payload_type` (the table's jsonb, the staging table's text)."""
    with cur.copy(sql) as copy:
        copy.set_types(["text", "text", "int8", payload_type, "timestamptz"])
        for row in batch:
            copy.write_row(row)


def touched_minutes(batch: list[tuple]) -> list[tuple[str, datetime]]:
    """The (robot_id, UTC minute) pairs `batch` has rows in. Per run of one robot's rows (a
    request's batch: the server's writes join them) the minutes from the first row's to the
    last's — a min and a max in C, not a minute computed per row in `nsm serve`'s hot path
    (0.2 against 2.7 us a row); a run that spans a gap of idle minutes lists only its rows' own."""
    out = set()
    for robot, rows in groupby(batch, key=_ROBOT):
        times = list(map(_CREATED, rows))
        first, last = utc_minute(min(times)), utc_minute(max(times))
        if last - first > _SPAN:
            out.update((robot, utc_minute(t)) for t in times)
        else:
            out.update((robot, first + k * _ONE) for k in range((last - first) // _ONE + 1))
    return sorted(out)


def utc_minute(t: datetime) -> datetime:
    """The start of `t`'s UTC minute: what a rollup note and `telemetry_minute` name."""
    return _utc(t).replace(second=0, microsecond=0)


def _utc(t: datetime) -> datetime:
    try:
        return t.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 in an offset: its UTC time is past datetime's range
        return t


def sql_time(dialect: str, t: datetime):
    """`t` as a query compares it with stored times: SQLite holds SQLAlchemy's naive UTC text."""
    return _utc(t).replace(tzinfo=None).strftime(SQLITE_TIME) if dialect == "sqlite" else t


@dataclass
class WriterStats:
    written: int = 0  # rows the target accepted (including replays)
    spooled: int = 0  # rows that went to the disk spool
    dropped: int = 0  # rows lost because the pipe and the producer's buffer were full
    spool_dropped: int = 0  # spooled rows deleted because the spool was full
    rejected: int = 0  # rows the ingest service refused as invalid (never retried)
    failures: int = 0  # failed writes (target unreachable)
    last_error: str = ""


class Rejected(Exception):
    """The target refused the batch as invalid: retrying cannot help (the rows are not spooled)."""


WRITE_ERRORS = (SQLAlchemyError, psycopg.Error, OSError, ConnectionError)  # the target unreachable: spool


class SpoolingSink:
    """write() to the target, or spool; subclasses implement `_write(batch)` (raising one of
    WRITE_ERRORS, or Rejected)."""

    def __init__(self, spool_dir: Path | None, max_spool_bytes: int = 512 * 2**20):
        self.spool_dir = spool_dir
        if spool_dir is not None:
            spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_spool_bytes = max_spool_bytes
        self.ok = True
        self.stats = WriterStats()
        self.retry_after = 0.0  # s the target asked to wait before the next try (HTTP Retry-After)

    def _write(self, batch: list[tuple]) -> None:
        raise NotImplementedError

    def flush(self, batch: list[tuple]) -> bool:
        """Write `batch` after anything spooled, or spool it; True if it reached the target."""
        if not batch:
            return True
        if self.replay_spool() and self.write(batch):
            return True
        self.spool(batch)
        return False

    def drain(self) -> bool:
        """Wait for the batches still in flight (HttpSink); True if none of them was spooled."""
        return True

    def write(self, batch: list[tuple]) -> bool:
        """Write `batch` now; False (the target unreachable) if the caller should keep it."""
        try:
            self._write(batch)
        except (*WRITE_ERRORS, Rejected) as exc:
            return self._outcome(batch, exc)
        return self._outcome(batch, None)

    def _outcome(self, batch: list[tuple], error: Exception | None) -> bool:
        """Count a write's result (in the caller's thread); False if the target was unreachable."""
        self.ok = not isinstance(error, WRITE_ERRORS)
        if error is None:
            self.stats.written += len(batch)
        elif isinstance(error, Rejected):
            self.stats.rejected += len(batch)
            self.stats.last_error = str(error)
        else:
            self.stats.failures += 1
            self.stats.last_error = str(getattr(error, "orig", error)).strip().splitlines()[0][:200]
        return self.ok

    def spool(self, batch: list[tuple]) -> None:
        path = self.spool_dir / f"{time.time_ns():020d}.jsonl"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for row in batch:
                f.write(json.dumps([*row[:4], row[4].isoformat()]) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
        self.stats.spooled += len(batch)
        files = sorted(self.spool_dir.glob("*.jsonl"))
        total = sum(p.stat().st_size for p in files)
        while total > self.max_spool_bytes and len(files) > 1:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            self.stats.spool_dropped += sum(1 for _ in oldest.open())
            oldest.unlink()
            self.stats.last_error = f"spool over {self.max_spool_bytes} bytes: dropped the oldest batches"

    def replay_spool(self) -> bool:
        """Write spooled batches oldest first; True when the spool is empty."""
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            rows = [(*r[:4], datetime.fromisoformat(r[4])) for r in map(json.loads, path.open())]
            if not self.write(rows):
                return False
            path.unlink()
        return True


class DatabaseSink(SpoolingSink):
    def __init__(self, db_url: str, spool_dir: Path | None, max_spool_bytes: int = 512 * 2**20):
        super().__init__(spool_dir, max_spool_bytes)
        self.engine = make_engine(db_url)
        self.copy = self.engine.dialect.name == "postgresql"
        self._raw = None  # PostgreSQL: the connection batches go through (_open)

    def insert(self, batch: list[tuple]) -> None:
        """Write `batch` now, in one transaction, or raise (no spool): `nsm serve`'s coalescing writer."""
        self._write(batch)

    def _write(self, batch: list[tuple]) -> None:
        if not batch:
            return
        touched = touched_minutes(batch)
        if not self.copy:
            with self.engine.begin() as conn:
                conn.exec_driver_sql(_SQLITE_INSERT, [(*r[:4], sql_time("sqlite", r[4])) for r in batch])
                conn.exec_driver_sql(_SQLITE_NOTE, [(robot, sql_time("sqlite", minute)) for robot, minute in touched])
            return
        raw = self._raw or self._open()
        note = _NOTE + ", ".join(["(%s, %s)"] * len(touched)), [x for pair in touched for x in pair]
        try:
            try:
                with raw.cursor() as cur:
                    _copy(cur, _COPY, "jsonb", batch)
                    cur.execute(*note)
            except psycopg.errors.UniqueViolation:  # rows stored before: the ones not stored yet, through the merge
                raw.rollback()
                with raw.cursor() as cur:
                    _copy(cur, _STAGE_COPY, "text", batch)
                    cur.execute(_MERGE)
                    cur.execute(*note)
            raw.commit()
        except BaseException:
            self._raw = None
            raw.invalidate()  # the connection may be half-way through a COPY: never reuse it
            raise

    def _open(self):
        """The sink's own connection, kept between batches with its staging table made once: a
        batch is then two round trips (COPY, commit; a batch sent again adds the staging COPY and
        the merge), not six (pool check-out ping, staging table, ..., the pool's rollback on
        return) — in `nsm serve` each round trip also waits for the GIL beside the request
        handlers."""
        raw = self.engine.raw_connection()
        try:
            set_json_dumps(_as_is, context=raw.driver_connection)  # payloads are JSON text: jsonb takes them as they are
            with raw.cursor() as cur:
                cur.execute(_STAGE)
            raw.commit()
        except BaseException:
            raw.invalidate()
            raise
        self._raw = raw
        return raw


class HttpSink(SpoolingSink):
    """POST batches to the ingest service. 2xx: written; 4xx other than auth/rate: the rows
    are invalid and retrying cannot help (counted as rejected); anything else: spool, retry.

    `in_flight` > 1: flush() sends the batch and returns while up to that many wait for their
    answers (the writer process, where batches queue up behind a slow answer); drain() waits
    for them. 1: flush() returns with the answer (a robot measuring its ack latency)."""

    def __init__(self, url: str, spool_dir: Path | None, max_spool_bytes: int = 512 * 2**20, timeout: float = 5.0,
                 in_flight: int = 1):
        import urllib3

        super().__init__(spool_dir, max_spool_bytes)
        token = os.environ.get(TOKEN_ENV, "")
        # urllib3's keep-alive pool, one connection per sender thread: 0.87 ms of CPU a 91-row batch
        # against httpx's 1.46 (measured side by side, bench/results/fleet.json `client_cpu_us_per_post`)
        # — what a fleet's robots, or a fleet bench's simulated ones, spend per second on telemetry
        self.client = urllib3.connection_from_url(
            url, maxsize=in_flight, block=True, timeout=urllib3.Timeout(connect=timeout, read=timeout),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        self.path = (urllib3.util.parse_url(url).path or "").rstrip("/") + INGEST_PATH
        self.in_flight = in_flight
        self._senders = ThreadPoolExecutor(in_flight, "nsm-http-sink") if in_flight > 1 else None
        self._flying: deque[tuple[list[tuple], Future]] = deque()

    def flush(self, batch: list[tuple]) -> bool:
        """As SpoolingSink.flush, or with `in_flight` > 1 and the target answering: send `batch`
        once fewer than `in_flight` batches are in flight, and return (True: not spooled yet)."""
        if self._senders is None or not batch:
            return super().flush(batch)
        self._settle(self.in_flight - 1)
        if not self.ok or any(self.spool_dir.glob("*.jsonl")):
            self._settle(0)  # the spool first, in order, as SpoolingSink does
            return super().flush(batch)
        self._flying.append((batch, self._senders.submit(self._write, batch)))
        return True

    def drain(self) -> bool:
        spooled = self.stats.spooled
        self._settle(0)
        return self.stats.spooled == spooled

    def _settle(self, keep: int) -> None:
        """Take answers, oldest first, until `keep` batches are in flight; spool the failed ones."""
        while len(self._flying) > keep:
            batch, answer = self._flying.popleft()
            if not self._outcome(batch, answer.exception()):
                self.spool(batch)

    def _write(self, batch: list[tuple]) -> None:
        import urllib3

        try:
            response = self.client.urlopen("POST", self.path, body=ingest_body(batch), retries=False)
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectionError(f"ingest service: {exc}") from None
        status, text = response.status, response.data[:200].decode(errors="replace")
        if status in (401, 403, 408, 429) or status >= 500:
            self.retry_after = _seconds(response.headers.get("retry-after"))  # 429/503: the server says when
            raise ConnectionError(f"ingest service answered {status}: {text}")
        self.retry_after = 0.0
        if status >= 400:
            raise Rejected(f"ingest service refused a batch ({status}): {text}")


def ingest_body(batch: list[tuple]) -> bytes:
    """The POST body `nsm serve` takes for `batch` (one robot's rows). The payloads are JSON text
    already: orjson splices them in (Fragment), 0.9 us a row against 2.9 re-encoding them."""
    return orjson.dumps({"robot_id": batch[0][0], "rows": [
        {"data_type": r[1], "seq": r[2], "payload": orjson.Fragment(r[3]), "created_at": r[4]} for r in batch]})


def _seconds(retry_after: str | None) -> float:
    """Retry-After in seconds (the delta-seconds form nsm serve sends; an HTTP date counts as 0)."""
    try:
        return max(0.0, min(float(retry_after or 0), 300.0))
    except ValueError:
        return 0.0


def make_sink(target: str, spool_dir: Path | None, max_spool_bytes: int = 512 * 2**20,
              in_flight: int = 1) -> SpoolingSink:
    """HttpSink for an http(s) URL (the ingest service; `in_flight` batches at once), DatabaseSink
    for a database URL."""
    if target.startswith(("http://", "https://")):
        return HttpSink(target, spool_dir, max_spool_bytes, in_flight=in_flight)
    return DatabaseSink(target, spool_dir, max_spool_bytes)
