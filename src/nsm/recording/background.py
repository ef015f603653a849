"""What every episode format shares: frames handed over without blocking, written on a thread.

The control loop calls `add_frame` (and the policy's side `add_chunk`), which only enqueue (a
full queue drops the item and counts it in `dropped`). A writer thread calls the format's
`_append` / `_append_chunk`; an error there
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


@dataclass(frozen=True)
class ChunkRecord:
    """An action chunk as the recorder saw it arrive: what the policy predicted, for which
    moment, and when it got there. `arrived - observed` is the chunk's latency as the arm
    sees it (inference plus hand-over); its first `arrived - observed` seconds were already
    in the past when it arrived."""

    actions: np.ndarray  # (L, joints): one action per control period from `observed` on
    observed: float  # seconds since the episode started: the observation it was predicted from
    arrived: float  # seconds since the episode started: when it was handed to the queue / received


MIN_FREE_BYTES = 256 * 2**20  # stop recording with this much left on the disk


class DiskFull(NsmError):
    pass


class BackgroundEpisodeWriter:
    path: Path  # the episode's final path; subclasses set it before `_start()`

    def __init__(self, queue_size: int = 256, min_free_bytes: int = MIN_FREE_BYTES):
        self._queue: queue.Queue[EpisodeFrame | ChunkRecord | None] = queue.Queue(maxsize=queue_size)
        self.frames = 0
        self.chunks = 0
        self.dropped = 0
        self.error: BaseException | None = None
        self.min_free_bytes = min_free_bytes
        self._thread = threading.Thread(target=self._drain, name=f"{type(self).__name__}", daemon=True)

    def _start(self) -> None:
        """Subclasses call this once their files are open."""
        self._thread.start()

    def _append(self, frame: EpisodeFrame) -> None:
        raise NotImplementedError

    def _append_chunk(self, chunk: ChunkRecord) -> None:
        raise NotImplementedError

    def _finish(self, success: bool | None) -> Path:
        raise NotImplementedError

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def add_frame(self, frame: EpisodeFrame, block: bool = False) -> bool:
        """Enqueue one frame without blocking; False (and counted) if the queue is full.

        `block=True` waits for room instead: for converters and benchmarks, never the control loop."""
        return self._put(frame, block)

    def add_chunk(self, chunk: ChunkRecord, block: bool = False) -> bool:
        """Enqueue one action chunk, like a frame (a full queue drops it, counted in `dropped`)."""
        return self._put(chunk, block)

    def _put(self, item: EpisodeFrame | ChunkRecord, block: bool) -> bool:
        try:
            self._queue.put(item, block=block)
            return True
        except queue.Full:
            self.dropped += 1
            return False

    def close(self, success: bool | None = None) -> Path:
        """Write the remaining frames, record the outcome, return the finished episode's path."""
        self._queue.put(None)
        self._thread.join()
        return self._finish(success)

    def discard(self) -> None:
        """Stop writing and delete the unfinished episode: for a converter whose input failed
        half way (a recorder closes instead: what it recorded is kept)."""
        self._queue.put(None)
        self._thread.join()
        self._discard()

    def _discard(self) -> None:
        raise NotImplementedError

    def _failed(self, where: Path) -> NsmError:
        return NsmError(f"recording stopped at frame {self.frames} of episode {where}: {self.error}; free disk space "
                        f"or choose another output folder, then `nsm dataset recover` keeps the frames written")

    def _check_disk(self) -> None:
        free = shutil.disk_usage(self.path.parent).free
        if free < self.min_free_bytes:
            raise DiskFull(f"the disk is full: {free / 2**20:.0f} MiB free, below the {self.min_free_bytes / 2**20:.0f} MiB "
                           "kept in reserve")

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is None:
                try:
                    self._check_disk()
                    if isinstance(item, ChunkRecord):
                        self._append_chunk(item)
                        self.chunks += 1
                    else:
                        self._append(item)
                        self.frames += 1
                except Exception as exc:  # stop writing, keep the robot running
                    self.error = exc
