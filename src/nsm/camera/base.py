"""The camera interface shared by every source (sim, OpenCV, video file).

A camera captures on its own thread and keeps only the latest frame, so a consumer (the
control loop, a ROS timer) never waits for the sensor: it takes what is there and checks
the capture stamp.
"""
import threading
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    stamp: float  # time.monotonic() of the capture
    seq: int  # capture counter, starts at 0


class Camera:
    """Base class: runs `_capture()` on a thread at up to `fps`, keeps the newest frame.

    Subclasses implement `_open()` (called on the capture thread: GL contexts and device
    handles are per thread), `_capture() -> np.ndarray` and `_close()`.
    """

    def __init__(self, name: str, width: int, height: int, fps: float):
        self.name, self.width, self.height, self.fps = name, width, height, fps
        self._latest: Frame | None = None
        self._new_frame = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"camera-{name}", daemon=True)
        self.frames = 0
        self._started_at = 0.0
        self._stopped_at: float | None = None

    def _open(self) -> None:
        pass

    def _capture(self) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def start(self, timeout: float = 30.0) -> "Camera":
        """Start capturing; returns once the first frame exists (or raises its error)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"camera {self.name}: no frame within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def latest(self) -> Frame | None:
        return self._latest

    def frame_after(self, stamp: float, timeout: float = 5.0) -> Frame:
        """The newest frame once one was captured after `stamp` (time.monotonic()): after a
        simulated world is reset, the frames still held show the old one until then."""
        with self._new_frame:
            if not self._new_frame.wait_for(lambda: self._error is not None or (
                    self._latest is not None and self._latest.stamp > stamp), timeout):
                raise TimeoutError(f"camera {self.name}: no new frame within {timeout} s")
            if self._error is not None:
                raise self._error
            return self._latest

    @property
    def measured_fps(self) -> float:
        """Frames actually captured per second since the first frame."""
        elapsed = self._elapsed()
        return (self.frames - 1) / elapsed if self.frames > 1 and elapsed > 0 else 0.0

    @property
    def dropped(self) -> int:
        """Capture slots at `fps` since the first frame that produced no frame (the source was slow)."""
        if self.frames == 0:
            return 0
        expected = int(self._elapsed() * self.fps) + 1
        return max(0, expected - self.frames)

    def _elapsed(self) -> float:
        """Seconds from the first frame to now, or to stop()."""
        return (self._stopped_at or time.monotonic()) - self._started_at

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._open()
            period = 1.0 / self.fps
            next_due = time.monotonic()
            while not self._stop.is_set():
                stamp = time.monotonic()
                image = self._capture()
                with self._new_frame:
                    self._latest = Frame(image, stamp, self.frames)
                    self._new_frame.notify_all()
                if self.frames == 0:
                    self._started_at = stamp
                    self._ready.set()
                self.frames += 1
                next_due = max(next_due + period, time.monotonic())
                self._stop.wait(next_due - time.monotonic())
        except BaseException as exc:  # surfaced by start() / frame_after(), or seen as a stalled stream
            with self._new_frame:
                self._error = exc
                self._new_frame.notify_all()
            self._ready.set()
        finally:
            self._close()
