"""Episode frames from streams that arrive separately and out of order (recorder_node's topics).

A frame is one control tick: the command sent, the joint state read at that tick, and each
camera's newest image taken by then. The arm driver stamps a tick's state and command with
the same time, so a command is paired with the state of its own stamp, not with whichever
state arrived last: over DDS, on a busy machine, the next tick's state can arrive before
this tick's command, or this tick's state after it. A command waits (at most `wait`
seconds) until its state is there and every camera has shown a frame taken at or after the
tick (so no newer frame from before the tick is still on its way); after that it takes the
nearest it has. Commands leave in the order they came.

Camera topics are best effort: a frame lost on the way (or late past the wait) leaves a tick
with the frame the tick before had. That is counted per camera (`repeated`), so an episode's
audit says how many of its images show the world a tick late.
"""
from collections import deque
from dataclasses import dataclass

import numpy as np

from nsm.recording.background import EpisodeFrame

SAME_STAMP_S = 1e-6  # stamps of one tick, converted from the same ROS time


@dataclass(frozen=True)
class _Command:
    stamp: float
    action: np.ndarray
    received: float  # the receiver's clock, for the wait


class TickPairer:
    def __init__(self, cameras: list[str], t0: float, wait: float = 0.2, states: int = 90, images: int = 15):
        """`t0`: the episode's start (frame timestamps are stamp - t0); `states`/`images`: how
        many recent ones are kept to pair from (3 s of states, 0.5 s of images at 30 Hz)."""
        self.cameras, self.t0, self.wait = cameras, t0, wait
        self._states: deque[tuple[float, np.ndarray, np.ndarray]] = deque(maxlen=states)
        self._images: dict[str, deque[tuple[float, np.ndarray]]] = {c: deque(maxlen=images) for c in cameras}
        self._pending: deque[_Command] = deque()
        self.unpaired = 0  # commands with no state or no image of some camera at all: not recorded
        self.repeated = dict.fromkeys(cameras, 0)  # ticks given the same frame as the tick before
        self._last_frame: dict[str, float | None] = dict.fromkeys(cameras)

    def state(self, stamp: float, position: np.ndarray, velocity: np.ndarray) -> None:
        self._states.append((stamp, position, velocity))

    def image(self, camera: str, stamp: float, image: np.ndarray) -> None:
        self._images[camera].append((stamp, image))

    def command(self, stamp: float, action: np.ndarray, now: float) -> None:
        self._pending.append(_Command(stamp, action, now))

    def frames(self, now: float, force: bool = False) -> list[EpisodeFrame]:
        """The frames complete by `now` (or waited for long enough; all of them with `force`)."""
        out = []
        while self._pending:
            command = self._pending[0]
            state = next((s for s in reversed(self._states) if abs(s[0] - command.stamp) < SAME_STAMP_S), None)
            complete = state is not None and all(
                frames and max(s for s, _ in frames) >= command.stamp - SAME_STAMP_S for frames in self._images.values())
            if not (complete or force or now - command.received > self.wait):
                break
            self._pending.popleft()
            state = state or self._nearest_state(command.stamp)
            taken = {camera: self._image_at(camera, command.stamp) for camera in self.cameras}
            if state is None or any(frame is None for frame in taken.values()):
                self.unpaired += 1
                continue
            for camera, (stamp, _) in taken.items():
                self.repeated[camera] += stamp == self._last_frame[camera]
                self._last_frame[camera] = stamp
            images = {camera: image for camera, (_, image) in taken.items()}
            _, position, velocity = state
            out.append(EpisodeFrame(position, velocity, command.action, images, command.stamp - self.t0))
        return out

    def _nearest_state(self, stamp: float):
        """The newest state measured by `stamp`, else the oldest one after it."""
        before = [s for s in self._states if s[0] <= stamp + SAME_STAMP_S]
        if before:
            return max(before, key=lambda s: s[0])
        return min(self._states, key=lambda s: s[0]) if self._states else None

    def _image_at(self, camera: str, stamp: float) -> tuple[float, np.ndarray] | None:
        """(its stamp, the frame): the newest frame taken by `stamp`, else the first one after it."""
        frames = self._images[camera]
        before = [f for f in frames if f[0] <= stamp + SAME_STAMP_S]
        if before:
            return max(before, key=lambda f: f[0])
        return min(frames, key=lambda f: f[0]) if frames else None
