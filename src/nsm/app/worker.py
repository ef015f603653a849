"""`nsm worker`: the Brain Worker following a telemetry database, until a deadline or Ctrl-C."""
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nsm.ai.hub import HubClient
from nsm.ai.worker import BrainWorker, PredictionStore, WorkerStats, tail_database


@dataclass(frozen=True)
class WorkerRun:
    stats: WorkerStats
    seconds: float
    hub_sent: int | None  # None: no hub
    hub_dropped: int | None


def follow_database(models: list[Path], db_url: str, robot: str | None, hub_url: str, hub_namespace: str,
                    hub_token: str, store: bool, from_start: bool, duration: float,
                    on_row: Callable[[WorkerStats, HubClient | None], None] | None = None) -> WorkerRun:
    """Feed every new row of the models' data types to the worker; `duration` 0 runs until Ctrl-C."""
    hub = HubClient(hub_url, hub_namespace, hub_token or None) if hub_url else None
    brain = BrainWorker(models, hub=hub, store=PredictionStore(db_url) if store else None)
    stop = threading.Event()
    timer = threading.Timer(duration, stop.set) if duration else None
    if timer is not None:
        timer.start()
    started = time.monotonic()
    try:
        for row in tail_database(db_url, brain.data_types, robot, from_start=from_start, stop=stop):
            brain.feed(*row)
            if on_row is not None:
                on_row(brain.stats, hub)
    except KeyboardInterrupt:
        pass
    finally:
        if timer is not None:
            timer.cancel()
        if hub is not None:
            hub.close()
        if brain.store is not None:
            brain.store.close()
    return WorkerRun(brain.stats, time.monotonic() - started, hub.sent if hub else None, hub.dropped if hub else None)
