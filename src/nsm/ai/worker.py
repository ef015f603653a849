"""The Brain Worker: live telemetry in, predictions out to the hub, the `predictions` table
and whoever else listens (the ROS `predictions` topic).

Rows come from ROS topics (predictor_node) or from the database the ingest service and
the DB bridge fill (`nsm worker`, `tail_database`). A malformed row is skipped and
counted, never raised. Nothing downstream can stall `feed()`: the hub client and the
prediction store each queue (bounded, oldest dropped and counted) and work on threads of
their own.
"""
import collections
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nsm.ai.predictor import LivePredictor, MalformedRow, Prediction
from nsm.errors import NsmError


@dataclass
class WorkerStats:
    rows: int = 0
    skipped: int = 0  # malformed rows
    predictions: int = 0


class PredictionStore:
    """Rows of the `predictions` table, inserted in batches on a thread; a database that is
    down costs the oldest predictions beyond `max_pending` (counted), never the worker's time."""

    def __init__(self, db_url: str, max_pending: int = 10_000, every_s: float = 0.5):
        from nsm.telemetry.db import connect

        self.engine = connect(db_url)
        self.written = 0
        self.dropped = 0
        self.failures = 0
        self._pending: collections.deque = collections.deque(maxlen=max_pending)
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nsm-predictions", daemon=True)
        self._thread.start()

    def add(self, p: Prediction) -> None:
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
        self._pending.append(p)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._flush()
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self._flush()

    def _flush(self) -> None:
        from sqlalchemy import insert

        from nsm.telemetry.models import Prediction as Row

        batch = []
        while self._pending and len(batch) < 5000:
            batch.append(self._pending.popleft())
        if not batch:
            return
        rows = [{"robot_id": p.robot_id, "model": p.model, "value": p.value, "confidence": p.confidence,
                 "unit": p.unit, "message": p.message, "payload": p.update_data()["data"],
                 "created_at": datetime.fromtimestamp(p.sample_time, UTC)} for p in batch]
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(Row), rows)
            self.written += len(rows)
        except Exception:  # noqa: BLE001 - database down: keep them for the next try (bounded)
            self.failures += 1
            self._pending.extendleft(reversed(batch[: self._pending.maxlen - len(self._pending)]))


class BrainWorker:
    def __init__(self, model_dirs: list[Path], hub=None, store: PredictionStore | None = None,
                 on_prediction: Callable[[Prediction], None] | None = None):
        if not model_dirs:
            raise NsmError("no models: pass at least one folder made by `nsm ai train`")
        self.model_dirs = [Path(d) for d in model_dirs]
        self._predictors: dict[str, list[LivePredictor]] = {}  # per robot: each keeps its own history
        self.data_types = set().union(*(LivePredictor(d).data_types for d in self.model_dirs))
        self.hub, self.store, self.on_prediction = hub, store, on_prediction
        self.stats = WorkerStats()

    def feed(self, robot_id, data_type, stamp, payload, received_at: float | None = None) -> list[Prediction]:
        """One telemetry row (created_at as Unix s); the predictions it completed."""
        received_at = time.time() if received_at is None else received_at
        self.stats.rows += 1
        if not (isinstance(robot_id, str) and isinstance(data_type, str) and isinstance(payload, dict)
                and isinstance(stamp, (int, float)) and math.isfinite(stamp)):
            self.stats.skipped += 1
            return []
        if data_type not in self.data_types:
            return []
        predictors = self._predictors.get(robot_id)
        if predictors is None:
            predictors = self._predictors[robot_id] = [LivePredictor(d) for d in self.model_dirs]
        out = []
        for predictor in predictors:
            try:
                prediction = predictor.update(robot_id, data_type, float(stamp), payload, received_at)
            except MalformedRow:
                self.stats.skipped += 1
                break  # one count per row
            if prediction is not None:
                out.append(prediction)
        for prediction in out:
            self.stats.predictions += 1
            if self.hub is not None:
                self.hub.send(prediction.update_data())
            if self.store is not None:
                self.store.add(prediction)
            if self.on_prediction is not None:
                self.on_prediction(prediction)
        return out


def tail_database(db_url: str, data_types: set[str], robot_id: str | None = None, poll_s: float = 0.05,
                  from_start: bool = False, stop: threading.Event | None = None) -> Iterator[tuple]:
    """(robot_id, data_type, created_at Unix s, payload) of rows as they arrive in
    `robot_telemetry` (by id; from the newest row at start unless `from_start`)."""
    from sqlalchemy import func, select

    from nsm.telemetry.db import connect
    from nsm.telemetry.models import RobotTelemetry as T

    engine = connect(db_url)
    stop = stop or threading.Event()
    try:
        with engine.connect() as conn:
            last = 0 if from_start else conn.execute(select(func.coalesce(func.max(T.id), 0))).scalar_one()
        query = select(T.id, T.robot_id, T.data_type, T.created_at, T.payload).where(T.data_type.in_(sorted(data_types)))
        if robot_id:
            query = query.where(T.robot_id == robot_id)
        while not stop.is_set():
            with engine.connect() as conn:
                rows = conn.execute(query.where(T.id > last).order_by(T.id).limit(5000)).all()
            for row in rows:
                created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
                yield row.robot_id, row.data_type, created.timestamp(), row.payload
            if rows:
                last = rows[-1].id
            else:
                stop.wait(poll_s)
    finally:
        engine.dispose()
