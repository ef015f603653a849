"""The telemetry writer the control loop calls without ever waiting on the database.

Two halves:

- `TelemetryWriter` (in the robot's process): `log()` serializes one row to a line
  (data_type, seq, time, payload JSON, tab-separated; orjson: 1 us where json takes 8)
  and hands the gathered lines to a pipe with non-blocking `os.write`s. No lock, no thread, no
  database code in this process: measured here, a writer *thread* beside the producer
  stalled `log()` for up to ~9 ms (GIL hand-offs and the garbage collector pausing every
  thread), which the control loop must never see.
- `_writer_main` (a spawned process): reads the pipe, batches rows (by size or time) and
  hands them to a sink (nsm.telemetry.sinks): the database (`target` = a database URL) or
  the ingest service of `nsm serve` (`target` = its http(s) URL, e.g. BACKEND_API_URL).
  While the target is unreachable batches are spooled on disk and replayed in order.

`seq` is unique per (robot_id, data_type) across restarts: it starts at the wall clock in
microseconds when the writer is created and counts up by one per row.
"""
import collections
import multiprocessing
import os
import selectors
import signal
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import orjson

from nsm.errors import NsmError
from nsm.telemetry.db import connect
from nsm.telemetry.sinks import WriterStats, make_sink

PIPE_BYTES = 1 << 20
WRITE_BYTES = 16 << 10  # gather this much before a write to the pipe ...
WRITE_EVERY_S = 0.02  # ... or this long: rows reach the writer process within 20 ms while logging goes on
WRITER_NICENESS = 10
START_TIMEOUT_S = 60
DRAIN_BYTES = 1 << 16
# Batches go out every DB_FLUSH_S into a database and every HTTP_FLUSH_S to `nsm serve`: the
# same rows in half the requests, which is what bounds the server (bench/fleet.py, 2 workers on
# 2 cores: 200 robots held with 0.5 s batches, 300 with 1 s); the dashboard still shows a robot
# within 2 s of its first batch.
DB_FLUSH_S = 0.5
HTTP_FLUSH_S = 1.0
# Batches a writer has in flight to `nsm serve` at once while it has a backlog: the server
# parses some while its database commits others (bench/telemetry.py, one robot, 5,000-row
# batches: 1 in flight 51% of the direct writer's rows/s, 2 61%, 3 74%, 4 72%). Without a
# backlog (a robot at its real rate: one batch a second) it waits for each answer.
HTTP_IN_FLIGHT = 3


def open_writer(target: str, robot_id: str, spool_dir: Path, **options) -> "TelemetryWriter":
    """A writer for a database URL (checked reachable and migrated first) or for the ingest
    service's http(s) URL (checked with /healthz); one clear error if neither answers."""
    if target.startswith(("http://", "https://")):
        import httpx

        try:
            httpx.get(f"{target.rstrip('/')}/healthz", timeout=3).raise_for_status()
        except httpx.HTTPError as exc:
            raise NsmError(f"cannot reach the ingest service at {target}: {exc}; start `nsm serve` there "
                           f"or pass a database URL") from None
    else:
        connect(target)
    return TelemetryWriter(target, robot_id, spool_dir, **options)


class TelemetryWriter:
    def __init__(self, target: str, robot_id: str, spool_dir: Path, *, batch_size: int = 500,
                 flush_interval: float | None = None, retry_interval: float = 1.0, max_spool_bytes: int = 512 * 2**20,
                 max_buffer_bytes: int = 64 * 2**20):
        self.robot_id = robot_id
        self._seq_base = time.time_ns() // 1000
        self._seq: dict[str, int] = {}
        self._pending: list[bytes] = []  # rows gathered since the last write to the pipe
        self._pending_bytes = 0
        self._last_ship = time.monotonic()
        self._backlog: collections.deque[bytes] = collections.deque()  # blocks the pipe could not take yet
        self._backlog_bytes = 0
        self._max_buffer = max_buffer_bytes
        self.stats = WriterStats()
        ctx = multiprocessing.get_context("spawn")  # never fork a process that holds threads and torch
        reader, writer = ctx.Pipe(duplex=False)  # the Connection carries the pipe's fd into the child
        self._stats_in, stats_out = ctx.Pipe(duplex=False)
        if flush_interval is None:
            flush_interval = HTTP_FLUSH_S if target.startswith(("http://", "https://")) else DB_FLUSH_S
        options = {"batch_size": batch_size, "flush_interval": flush_interval, "retry_interval": retry_interval,
                   "max_spool_bytes": max_spool_bytes}
        self._process = ctx.Process(target=_writer_main, name="nsm-telemetry-writer", daemon=True,
                                    args=(reader, stats_out, target, robot_id, str(spool_dir), options))
        self._process.start()
        # Lower priority from the first instruction (its imports too): on a 2-core robot
        # computer the control loop must win every contest for a core.
        os.setpriority(os.PRIO_PROCESS, self._process.pid, WRITER_NICENESS)
        reader.close()
        stats_out.close()
        try:
            ready = self._stats_in.poll(START_TIMEOUT_S) and self._stats_in.recv() == "ready"
        except EOFError:  # the process died before it was ready
            ready = False
        if not ready:
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

    def log(self, data_type: str, payload: dict, stamp: float | None = None) -> None:
        """Hand one row to the writer process; returns at once whatever the database is doing.

        `stamp` (Unix seconds) is the row's created_at; None: now. Simulated telemetry runs
        faster than real time and passes its own clock.

        Cost is bounded per call (~3 us): one orjson encode; every WRITE_EVERY_S or
        WRITE_BYTES the rows gathered so far go to the pipe in one non-blocking `os.write`
        of at most DRAIN_BYTES. If the pipe is full they wait in a local backlog (bounded:
        beyond `max_buffer_bytes` rows are dropped and counted)."""
        if "\t" in data_type or "\n" in data_type:
            raise ValueError(f"data_type {data_type!r} must not contain tabs or newlines")
        seq = self._seq.get(data_type, self._seq_base - 1) + 1
        self._seq[data_type] = seq
        created = time.time() if stamp is None else stamp
        self._pending.append(f"{data_type}\t{seq}\t{created!r}\t".encode() + orjson.dumps(payload) + b"\n")
        self._pending_bytes += len(self._pending[-1])
        if self._pending_bytes >= WRITE_BYTES or time.monotonic() - self._last_ship >= WRITE_EVERY_S:
            self._ship()

    @property
    def backlog_bytes(self) -> int:
        """Rows gathered in this process, not yet handed to the writer process."""
        return self._pending_bytes + self._backlog_bytes

    def _ship(self) -> None:
        """Move the gathered rows to the backlog and as much of the backlog as one write takes to the pipe."""
        if self._pending:
            block = b"".join(self._pending)
            rows = len(self._pending)
            self._pending.clear()
            self._pending_bytes = 0
            if self._backlog_bytes + len(block) > self._max_buffer:
                self.stats.dropped += rows
            else:
                self._backlog.append(block)
                self._backlog_bytes += len(block)
        self._last_ship = time.monotonic()
        self._drain_backlog()

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
        self._ship()
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


def _writer_main(reader, stats_out, target: str, robot_id: str, spool_dir: str, options: dict) -> None:
    """The writer process: pipe -> batches -> database / ingest service, or spool, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the robot process; this one drains
    sink = make_sink(target, Path(spool_dir), options["max_spool_bytes"], in_flight=HTTP_IN_FLIGHT)
    stats_out.send("ready")
    sink.replay_spool()  # a spool left by an earlier run goes first
    fd = reader.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    pending, batch, last_flush, eof = b"", [], time.monotonic(), False
    while not eof:
        interval = options["flush_interval"] if sink.ok else max(options["retry_interval"], sink.retry_after)
        if selector.select(timeout=max(0.0, last_flush + interval - time.monotonic())):
            chunk = os.read(fd, PIPE_BYTES)
            eof = not chunk
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:  # data_type \t seq \t unix time \t payload JSON (kept as text)
                data_type, seq, stamp, payload = line.decode().split("\t", 3)
                batch.append((robot_id, data_type, int(seq), payload, datetime.fromtimestamp(float(stamp), UTC)))
        if len(batch) >= options["batch_size"] or eof or time.monotonic() - last_flush >= interval:
            backlog = len(batch) >= options["batch_size"]
            while batch:
                head, batch = batch[:options["batch_size"]], batch[options["batch_size"]:]
                sink.flush(head)
            if not backlog:
                sink.drain()  # nothing queued behind the batches in flight: take their answers now
            if not sink.ok:
                sink.replay_spool()  # retry the spool every retry interval, new rows or not
            last_flush = time.monotonic()  # also when there was nothing to do: never spin
    sink.drain()
    stats_out.send(asdict(sink.stats))
