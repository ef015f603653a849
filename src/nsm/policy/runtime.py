"""The async chunk runtime: inference on its own worker, actions consumed at the control rate.

The control loop calls `act(obs)` once per tick. It never waits for inference: when fewer
than `threshold * chunk_size` actions remain it hands the newest observation to the worker
(if it is idle) and returns whatever is queued for this step, or None — the caller holds
position. Chunks that arrive late are aligned by step, so a slow inference shortens the
usable part of its chunk instead of shifting the trajectory in time.
"""
import threading
import time
from collections.abc import Callable

import numpy as np

from nsm.contract import Observation
from nsm.policy.action_queue import ActionQueue
from nsm.policy.base import ChunkPolicy


class AsyncChunkRuntime:
    def __init__(self, policy: ChunkPolicy, n_joints: int, threshold: float = 0.5, merge: str = "replace",
                 merge_coeff: float | None = None, max_obs_age: float = 0.2,
                 on_chunk: Callable[[np.ndarray, Observation], None] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        """`merge`/`merge_coeff`: how overlapping chunks combine (ActionQueue). An observation
        older than `max_obs_age` seconds (by `clock`, the clock of `obs.stamp`) is refused:
        acting on a stale view of the world is worse than holding. `on_chunk(chunk, obs)` is
        called on the worker for every valid chunk (the policy node publishes it)."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.policy = policy
        self.on_chunk = on_chunk
        self.n_joints = n_joints
        self.low_water = max(1, int(round(threshold * policy.chunk_size)))
        self.queue = ActionQueue(merge, merge_coeff)
        self.max_obs_age = max_obs_age
        self.clock = clock
        self.stale_observations = 0
        self._lock = threading.Lock()
        self._pending: Observation | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = False
        self._step = 0
        self.latencies: list[float] = []  # seconds per inference
        self.chunks = 0
        self.bad_chunks = 0
        self.empty_ticks = 0  # ticks with nothing queued (the arm held position)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="policy-worker", daemon=True)

    def start(self) -> "AsyncChunkRuntime":
        """Start the worker for a new episode (the policy forgets the last one first)."""
        self.policy.reset()
        self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.started:
            self._thread.join(timeout=30)

    def act(self, obs: Observation) -> np.ndarray | None:
        """The action for `obs.step`, or None when the queue is empty. Never blocks on inference."""
        with self._lock:
            self._step = obs.step
            if not self._busy and self.queue.remaining(obs.step) < self.low_water:
                if self.clock() - obs.stamp > self.max_obs_age:
                    self.stale_observations += 1
                else:
                    self._pending, self._busy = obs, True
                    self._wake.set()
            action = self.queue.pop(obs.step)
        if action is None:
            self.empty_ticks += 1
        return action

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                obs, self._pending = self._pending, None
            if obs is None:
                continue
            started = time.perf_counter()
            try:
                chunk = np.asarray(self.policy.predict_chunk(obs), dtype=float)
            except Exception as exc:  # keep the loop alive; the caller sees .error and holds
                self.error = exc
                chunk = None
            self.latencies.append(time.perf_counter() - started)
            with self._lock:
                if chunk is not None and chunk.ndim == 2 and chunk.shape[1] == self.n_joints and np.all(np.isfinite(chunk)):
                    self.queue.merge(chunk, obs.step, now=self._step)
                    self.chunks += 1
                else:
                    self.bad_chunks += 1
                    chunk = None
                self._busy = False
            if chunk is not None and self.on_chunk is not None:
                self.on_chunk(chunk, obs)
