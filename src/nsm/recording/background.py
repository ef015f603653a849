"""What every episode format shares: frames handed over without blocking, written on a thread.

The control loop calls `add_frame`, which only enqueues (a full queue drops the frame and
counts it in `dropped`). A writer thread calls the format's `_append`; an error there
(disk full, unwritable path) stops writing and is raised by `close()`, while the robot
keeps running. `close()` drains the queue and calls the format's `_finish`.
"""
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nsm.errors import NsmError


@dataclass(frozen=True)
class EpisodeFrame:
    qpos: np.ndarray
    qvel: np.ndarray
    action: np.ndarray
    images: dict[str, np.ndarray]
    timestamp: float  # seconds since the episode started


class BackgroundEpisodeWriter:
    def __init__(self, queue_size: int = 256):
        self._queue: queue.Queue[EpisodeFrame | None] = queue.Queue(maxsize=queue_size)
        self.frames = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name=f"{type(self).__name__}", daemon=True)

    def _start(self) -> None:
        """Subclasses call this once their files are open."""
        self._thread.start()

    def _append(self, frame: EpisodeFrame) -> None:
        raise NotImplementedError

    def _finish(self, success: bool | None) -> Path:
        raise NotImplementedError

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def add_frame(self, frame: EpisodeFrame) -> bool:
        """Enqueue one frame without blocking; False (and counted) if the queue is full."""
        try:
            self._queue.put_nowait(frame)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, success: bool | None = None) -> Path:
        """Write the remaining frames, record the outcome, return the finished episode's path."""
        self._queue.put(None)
        self._thread.join()
        return self._finish(success)

    def _failed(self, where: Path) -> NsmError:
        return NsmError(f"episode {where} stopped at frame {self.frames}: {self.error}")

    def _drain(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._append(frame)
                    self.frames += 1
                except Exception as exc:  # disk full etc.: stop writing, keep the robot running
                    self.error = exc
