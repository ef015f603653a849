"""What every episode format shares: frames handed over without blocking, written on a thread.

The control loop calls `add_frame`, which only enqueues (a full queue drops the frame and
counts it in `dropped`). A writer thread calls the format's `_append`; an error there
(unwritable path, I/O error) stops writing and is raised by `close()`, while the robot
keeps running. `close()` drains the queue and calls the format's `_finish`.

A full disk is not waited for: HDF5 cannot close a file after a failed write (measured:
the process segfaults at exit), so writing stops while `min_free_bytes` are still free,
the file closes cleanly, and `close()` reports it.
"""
import queue
import shutil
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


MIN_FREE_BYTES = 256 * 2**20  # stop recording with this much left on the disk


class DiskFull(NsmError):
    pass


class BackgroundEpisodeWriter:
    path: Path  # the episode's final path; subclasses set it before `_start()`

    def __init__(self, queue_size: int = 256, min_free_bytes: int = MIN_FREE_BYTES):
        self._queue: queue.Queue[EpisodeFrame | None] = queue.Queue(maxsize=queue_size)
        self.frames = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self.min_free_bytes = min_free_bytes
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

    def add_frame(self, frame: EpisodeFrame, block: bool = False) -> bool:
        """Enqueue one frame without blocking; False (and counted) if the queue is full.

        `block=True` waits for room instead: for converters and benchmarks, never the control loop."""
        try:
            self._queue.put(frame, block=block)
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
        return NsmError(f"recording stopped at frame {self.frames} of episode {where}: {self.error}; free disk space "
                        f"or choose another output folder, then `nsm dataset recover` keeps the frames written")

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.path.parent).free
        if free < self.min_free_bytes:
            raise DiskFull(f"the disk is full: {free / 2**20:.0f} MiB free, below the {self.min_free_bytes / 2**20:.0f} MiB "
                           "kept in reserve")

    def _drain(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._check_disk()
                    self._append(frame)
                    self.frames += 1
                except Exception as exc:  # stop writing, keep the robot running
                    self.error = exc
