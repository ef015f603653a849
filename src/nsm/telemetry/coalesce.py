"""Many robots' batches into few database writes, for `nsm serve`.

Each request hands its rows over and waits; one thread writes whatever gathered while the
previous write ran as one COPY and one commit (up to `max_rows`), then answers every request
in it. A request is answered only once its rows are committed, so a robot deletes from its
spool only what the database holds: when the database is down the answer is an error and
the rows stay on the robot. Past `max_pending` rows waiting, new batches are refused at
once (`Busy`: 429 with Retry-After) instead of queueing without bound — the robots' spools
are the buffer, not the server's memory.
"""
import queue
import threading
from concurrent.futures import Future

import psycopg
from sqlalchemy.exc import DataError, SQLAlchemyError

from nsm.telemetry.sinks import DatabaseSink


class Busy(Exception):
    """More rows are waiting than the server takes: come back later."""


class Unavailable(Exception):
    """The database did not take the rows (down, or refusing): nothing was stored."""


class Refused(Exception):
    """The database refused these rows' values (a batch alone): retrying cannot help."""


class CoalescingWriter:
    def __init__(self, sink: DatabaseSink, max_pending: int = 200_000, max_rows: int = 20_000):
        self.sink, self.max_pending, self.max_rows = sink, max_pending, max_rows
        self._queue: queue.Queue = queue.Queue()
        self._pending = 0  # rows handed over and not yet answered
        self._lock = threading.Lock()
        self.ok = True  # the last write reached the database (GET /healthz)
        self.writes = 0  # database writes (each one COPY + commit)
        self.batches = 0  # requests answered by them (batches / writes: how much coalescing saves)
        threading.Thread(target=self._run, name="coalescing-writer", daemon=True).start()

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, rows: list[tuple]) -> Future:
        """A future that is done (None) once `rows` are committed, or fails with Unavailable or Refused."""
        with self._lock:
            if self._pending + len(rows) > self.max_pending and self._pending:
                raise Busy(f"{self._pending} rows are waiting to be written")
            self._pending += len(rows)
        done: Future = Future()
        self._queue.put((rows, done))
        return done

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            size = len(group[0][0])
            while size < self.max_rows:
                try:
                    group.append(self._queue.get_nowait())
                except queue.Empty:
                    break
                size += len(group[-1][0])
            self._write(group)
            with self._lock:
                self._pending -= size

    def _write(self, group: list[tuple[list, Future]]) -> None:
        try:
            self.sink.insert([row for rows, _ in group for row in rows])
        except (DataError, psycopg.DataError) as exc:
            if len(group) > 1:  # one batch's values: write the others, refuse that one alone
                for item in group:
                    self._write([item])
                return
            _answer(group, Refused(_first_line(exc)))
            return
        except (SQLAlchemyError, psycopg.Error, OSError) as exc:
            self.ok = False
            _answer(group, Unavailable(_first_line(exc)))
            return
        self.ok = True
        self.writes += 1
        self.batches += len(group)
        _answer(group, None)


def _answer(group: list[tuple[list, Future]], error: Exception | None) -> None:
    for _, done in group:
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
