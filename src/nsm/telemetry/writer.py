"""The telemetry writer the control loop calls without ever waiting on the database.

`log()` stamps a row and appends it to an in-memory deque (O(1), no I/O, no lock held by
I/O). A writer thread drains it in batches (by size or time) with a multi-row
`INSERT ... ON CONFLICT DO NOTHING` on (robot_id, data_type, seq), so replaying a batch
twice never duplicates a row. When the database is unreachable the batch is written to
an on-disk spool (one JSON-lines file per batch) and the spool is replayed, oldest first,
before any new rows once the database answers again; the spool survives a restart.

`seq` is unique per (robot_id, data_type) across restarts: it starts at the wall clock in
microseconds when the writer is created and counts up by one per row.
"""
import collections
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from nsm.telemetry.models import RobotTelemetry

_INSERTS = {"postgresql": pg_insert, "sqlite": sqlite_insert}
_KEY = ["robot_id", "data_type", "seq"]


@dataclass
class WriterStats:
    written: int = 0  # rows the database accepted (including replays)
    spooled: int = 0  # rows that went to the disk spool
    dropped: int = 0  # rows lost because the in-memory queue was full
    failures: int = 0  # failed database writes
    last_error: str = ""


class TelemetryWriter:
    def __init__(self, engine: Engine, robot_id: str, spool_dir: Path, *, batch_size: int = 500,
                 flush_interval: float = 0.5, retry_interval: float = 1.0, max_queue: int = 200_000):
        self._engine = engine
        self._insert = _INSERTS[engine.dialect.name](RobotTelemetry.__table__).on_conflict_do_nothing(index_elements=_KEY)
        self.robot_id = robot_id
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._batch_size, self._flush_interval, self._retry = batch_size, flush_interval, retry_interval
        self._max_queue = max_queue
        self._rows: collections.deque[dict] = collections.deque()
        self._seq_base = time.time_ns() // 1000
        self._seq: dict[str, int] = {}
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._db_ok = True
        self.stats = WriterStats()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
        self._thread.start()

    def log(self, data_type: str, payload: dict) -> None:
        """Queue one row; returns at once whatever the database is doing."""
        if len(self._rows) >= self._max_queue:
            self.stats.dropped += 1
            return
        seq = self._seq.get(data_type, self._seq_base - 1) + 1
        self._seq[data_type] = seq
        self._rows.append({"robot_id": self.robot_id, "data_type": data_type, "seq": seq,
                           "payload": payload, "created_at": datetime.now(UTC)})
        if len(self._rows) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows not yet in the database (in memory or spooled)."""
        return len(self._rows) + sum(1 for p in self.spool_dir.glob("*.jsonl") for _ in p.open())

    def close(self, timeout: float = 30.0) -> WriterStats:
        """Write what is queued (or spool it if the database stays down) and stop."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)
        return self.stats

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval if self._db_ok else self._retry)
            self._wake.clear()
            closing = self._closing.is_set()
            if self._replay_spool():
                while self._rows:
                    batch = [self._rows.popleft() for _ in range(min(self._batch_size, len(self._rows)))]
                    if not self._write(batch):
                        self._spool(batch)
                        break
            if not self._db_ok:
                self._spool_all()  # keep memory bounded while the database is down
            if closing:
                self._spool_all()
                return

    def _write(self, batch: list[dict]) -> bool:
        try:
            with self._engine.begin() as conn:
                conn.execute(self._insert, batch)
        except (SQLAlchemyError, OSError) as exc:
            self.stats.failures += 1
            self.stats.last_error = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
            self._db_ok = False
            return False
        self.stats.written += len(batch)
        self._db_ok = True
        return True

    def _spool_all(self) -> None:
        while self._rows:
            self._spool([self._rows.popleft() for _ in range(min(self._batch_size, len(self._rows)))])

    def _spool(self, batch: list[dict]) -> None:
        path = self.spool_dir / f"{time.time_ns():020d}.jsonl"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for row in batch:
                f.write(json.dumps({**row, "created_at": row["created_at"].isoformat()}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
        self.stats.spooled += len(batch)

    def _replay_spool(self) -> bool:
        """Write spooled batches oldest first; True when the spool is empty."""
        for path in sorted(self.spool_dir.glob("*.jsonl")):
            rows = [json.loads(line) for line in path.open()]
            for row in rows:
                row["created_at"] = datetime.fromisoformat(row["created_at"])
            if not self._write(rows):
                return False
            path.unlink()
        return True
