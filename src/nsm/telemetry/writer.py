"""The telemetry writer the control loop calls without ever waiting on the database.

Two halves:

- `TelemetryWriter` (in the robot's process): `log()` serializes one row to a line
  (data_type, seq, time, payload JSON, tab-separated) and writes it with one non-blocking
  `os.write` to a pipe. No lock, no thread, no
  database code in this process: measured here, a writer *thread* beside the producer
  stalled `log()` for up to ~9 ms (GIL hand-offs and the garbage collector pausing every
  thread), which the control loop must never see.
- `_writer_main` (a spawned process): reads the pipe, batches rows (by size or time) and
  writes them. On PostgreSQL a batch is one binary COPY into a temporary staging table and
  `INSERT ... SELECT ... ON CONFLICT DO NOTHING` (measured ~10x the ORM); on SQLite an
  executemany of `INSERT ... ON CONFLICT DO NOTHING`. The unique key (robot_id, data_type,
  seq) makes replaying a batch harmless. While the database is unreachable batches go to
  an on-disk spool (one JSON-lines file per batch), replayed oldest first before any new
  rows once the database answers; the spool survives restarts of the bridge. The spool is
  bounded (`max_spool_bytes`): when full, the oldest spooled batches are deleted and
  counted in `stats.spool_dropped` — after a long outage the newest telemetry matters
  most, and the disk that holds the episodes must not fill.

`seq` is unique per (robot_id, data_type) across restarts: it starts at the wall clock in
microseconds when the writer is created and counts up by one per row.
"""
import collections
import json
import multiprocessing
import os
import selectors
import signal
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from sqlalchemy.exc import SQLAlchemyError

from nsm.errors import NsmError
from nsm.telemetry.db import make_engine

_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS nsm_stage (robot_id text, data_type text, seq bigint, payload text, "
          "created_at timestamptz) ON COMMIT DELETE ROWS")
_COPY = "COPY nsm_stage (robot_id, data_type, seq, payload, created_at) FROM STDIN (FORMAT BINARY)"
_MERGE = ("INSERT INTO robot_telemetry (robot_id, data_type, seq, payload, created_at) "
          "SELECT robot_id, data_type, seq, payload::jsonb, created_at FROM nsm_stage "
          "ON CONFLICT (robot_id, data_type, seq) DO NOTHING")
_SQLITE_INSERT = ("INSERT INTO robot_telemetry (robot_id, data_type, seq, payload, created_at) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT (robot_id, data_type, seq) DO NOTHING")
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite (UTC, naive)
PIPE_BYTES = 1 << 20
WRITER_NICENESS = 10
START_TIMEOUT_S = 60
DRAIN_BYTES = 1 << 16


@dataclass
class WriterStats:
    written: int = 0  # rows the database accepted (including replays)
    spooled: int = 0  # rows that went to the disk spool
    dropped: int = 0  # rows lost because the pipe and the producer's buffer were full
    spool_dropped: int = 0  # spooled rows deleted because the spool was full
    failures: int = 0  # failed database writes
    last_error: str = ""


class TelemetryWriter:
    def __init__(self, db_url: str, robot_id: str, spool_dir: Path, *, batch_size: int = 500,
                 flush_interval: float = 0.5, retry_interval: float = 1.0, max_spool_bytes: int = 512 * 2**20,
                 max_buffer_bytes: int = 64 * 2**20):
        self.robot_id = robot_id
        self._seq_base = time.time_ns() // 1000
        self._seq: dict[str, int] = {}
        self._backlog: collections.deque[bytes] = collections.deque()  # lines the pipe could not take yet
        self._backlog_bytes = 0
        self._max_buffer = max_buffer_bytes
        self.stats = WriterStats()
        ctx = multiprocessing.get_context("spawn")  # never fork a process that holds threads and torch
        reader, writer = ctx.Pipe(duplex=False)  # the Connection carries the pipe's fd into the child
        self._stats_in, stats_out = ctx.Pipe(duplex=False)
        options = {"batch_size": batch_size, "flush_interval": flush_interval, "retry_interval": retry_interval,
                   "max_spool_bytes": max_spool_bytes}
        self._process = ctx.Process(target=_writer_main, name="nsm-telemetry-writer", daemon=True,
                                    args=(reader, stats_out, db_url, robot_id, str(spool_dir), options))
        self._process.start()
        # Lower priority from the first instruction (its imports too): on a 2-core robot
        # computer the control loop must win every contest for a core.
        os.setpriority(os.PRIO_PROCESS, self._process.pid, WRITER_NICENESS)
        reader.close()
        stats_out.close()
        if not self._stats_in.poll(START_TIMEOUT_S) or self._stats_in.recv() != "ready":
            raise NsmError(f"the telemetry writer process did not start within {START_TIMEOUT_S} s "
                           f"(exit code {self._process.exitcode}); see its error above")
        self._pipe = writer
        self._fd = writer.fileno()
        os.set_blocking(self._fd, False)
        try:
            import fcntl

            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except (ImportError, AttributeError, OSError):
            pass  # the default 64 KiB pipe works, with more buffering in this process

    def log(self, data_type: str, payload: dict) -> None:
        """Hand one row to the writer process; returns at once whatever the database is doing.

        Cost is bounded per call: one JSON encode, at most one `os.write` of a bounded size.
        If the pipe is full the line waits in a local backlog (bounded: beyond it rows are
        dropped and counted)."""
        if "\t" in data_type or "\n" in data_type:
            raise ValueError(f"data_type {data_type!r} must not contain tabs or newlines")
        seq = self._seq.get(data_type, self._seq_base - 1) + 1
        self._seq[data_type] = seq
        line = f"{data_type}\t{seq}\t{time.time()!r}\t{json.dumps(payload)}\n".encode()
        if self._backlog:
            if self._backlog_bytes + len(line) > self._max_buffer:
                self.stats.dropped += 1
            else:
                self._backlog.append(line)
                self._backlog_bytes += len(line)
            self._drain_backlog()
            return
        try:
            written = os.write(self._fd, line)
        except (BlockingIOError, BrokenPipeError):
            written = 0
        if written < len(line):
            self._backlog.append(line[written:])
            self._backlog_bytes += len(line) - written

    def _drain_backlog(self) -> None:
        """Move up to DRAIN_BYTES of the backlog into the pipe."""
        head, size = [], 0
        while self._backlog and size < DRAIN_BYTES:
            head.append(self._backlog.popleft())
            size += len(head[-1])
        chunk = b"".join(head)
        try:
            written = os.write(self._fd, chunk)
        except (BlockingIOError, BrokenPipeError):
            written = 0
        self._backlog_bytes -= written
        if written < len(chunk):
            self._backlog.appendleft(chunk[written:])

    def close(self, timeout: float = 60.0) -> WriterStats:
        """Hand over the backlog, let the writer process write (or spool) everything, and stop."""
        deadline = time.monotonic() + timeout
        while self._backlog and time.monotonic() < deadline and self._process.is_alive():
            self._drain_backlog()
            time.sleep(0.001)
        self.stats.dropped += sum(chunk.count(b"\n") for chunk in self._backlog)
        self._pipe.close()
        if self._stats_in.poll(max(0.0, deadline - time.monotonic())):
            child = WriterStats(**self._stats_in.recv())
            child.dropped += self.stats.dropped
            self.stats = child
        self._process.join(max(0.0, deadline - time.monotonic()))
        return self.stats


class _Sink:
    """Batches to the database, or to the spool while it is down (runs in the writer process)."""

    def __init__(self, db_url: str, robot_id: str, spool_dir: Path, max_spool_bytes: int):
        self.engine = make_engine(db_url)
        self.copy = self.engine.dialect.name == "postgresql"
        self.robot_id = robot_id
        self.spool_dir = spool_dir
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.max_spool_bytes = max_spool_bytes
        self.db_ok = True
        self.stats = WriterStats()

    def flush(self, batch: list[tuple]) -> None:
        """Write `batch` after anything spooled; spool it if the database is down."""
        if batch and not (self.replay_spool() and self.write(batch)):
            self.spool(batch)

    def write(self, batch: list[tuple]) -> bool:
        try:
            if self.copy:
                self._copy_batch(batch)
            else:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(_SQLITE_INSERT, [(*r[:4], r[4].strftime(_SQLITE_TIME)) for r in batch])
        except (SQLAlchemyError, psycopg.Error, OSError) as exc:
            self.stats.failures += 1
            self.stats.last_error = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
            self.db_ok = False
            return False
        self.stats.written += len(batch)
        self.db_ok = True
        return True

    def _copy_batch(self, batch: list[tuple]) -> None:
        raw = self.engine.raw_connection()
        try:
            with raw.cursor() as cur:
                cur.execute(_STAGE)
                with cur.copy(_COPY) as copy:
                    copy.set_types(["text", "text", "int8", "text", "timestamptz"])
                    for row in batch:
                        copy.write_row(row)
                cur.execute(_MERGE)
            raw.commit()
        except BaseException:
            raw.invalidate()  # the connection may be half-way through a COPY: never reuse it
            raise
        finally:
            raw.close()

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


def _writer_main(reader, stats_out, db_url: str, robot_id: str, spool_dir: str, options: dict) -> None:
    """The writer process: pipe -> batches -> database or spool, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the robot process; this one drains
    sink = _Sink(db_url, robot_id, Path(spool_dir), options["max_spool_bytes"])
    stats_out.send("ready")
    sink.replay_spool()  # a spool left by an earlier run goes first
    fd = reader.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    pending, batch, last_flush, eof = b"", [], time.monotonic(), False
    while not eof:
        interval = options["flush_interval"] if sink.db_ok else options["retry_interval"]
        if selector.select(timeout=max(0.0, last_flush + interval - time.monotonic())):
            chunk = os.read(fd, PIPE_BYTES)
            eof = not chunk
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:  # data_type \t seq \t unix time \t payload JSON (kept as text)
                data_type, seq, stamp, payload = line.decode().split("\t", 3)
                batch.append((robot_id, data_type, int(seq), payload, datetime.fromtimestamp(float(stamp), UTC)))
        due = time.monotonic() - last_flush >= interval
        if len(batch) >= options["batch_size"] or (due and (batch or not sink.db_ok)) or eof:
            while batch or (due and not sink.db_ok):
                head, batch = batch[:options["batch_size"]], batch[options["batch_size"]:]
                sink.flush(head)
                if not head:
                    sink.replay_spool()
                    break
            last_flush = time.monotonic()
    stats_out.send(asdict(sink.stats))
