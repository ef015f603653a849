"""Cameras read through OpenCV: a USB/V4L2 device, or a video file replayed in a loop.

Both run on the base class's capture thread, paced at the camera's fps (a video file
therefore plays in real time), and hand out RGB frames at the robot contract's size.
"""
import glob
from pathlib import Path

import cv2
import numpy as np

from nsm.camera.base import Camera
from nsm.contract import CameraSpec
from nsm.errors import NsmError


def video_devices() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


class OpenCVCamera(Camera):
    """A V4L2 device by index (0) or path (/dev/video0), MJPG at the contract's size and fps."""

    def __init__(self, spec: CameraSpec, device: int | str):
        super().__init__(spec.name, spec.width, spec.height, spec.fps)
        self.device = device
        self._capture_device: cv2.VideoCapture | None = None

    def _open(self) -> None:
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            found = ", ".join(video_devices()) or "none"
            raise NsmError(f"camera {self.name}: cannot open device {self.device!r} (video devices found: {found}); "
                           f"check the cable and `device` parameter")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        self._capture_device = cap

    def _capture(self) -> np.ndarray:
        ok, bgr = self._capture_device.read()
        if not ok:
            raise NsmError(f"camera {self.name}: device {self.device!r} stopped delivering frames")
        return _rgb_at(bgr, self.width, self.height)

    def _close(self) -> None:
        if self._capture_device is not None:
            self._capture_device.release()


class VideoFileCamera(Camera):
    """A video file played in real time at the camera's fps, looping at the end."""

    def __init__(self, spec: CameraSpec, path: Path):
        super().__init__(spec.name, spec.width, spec.height, spec.fps)
        self.path = Path(path)
        if not self.path.is_file():
            raise NsmError(f"camera {self.name}: video file {self.path} does not exist")
        self._video: cv2.VideoCapture | None = None
        self.loops = 0

    def _open(self) -> None:
        self._video = cv2.VideoCapture(str(self.path))
        if not self._video.isOpened() or not self._video.grab():
            raise NsmError(f"camera {self.name}: {self.path} is not a video OpenCV can read")
        self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def _capture(self) -> np.ndarray:
        ok, bgr = self._video.read()
        if not ok:  # end of file: start again
            self.loops += 1
            self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._video.read()
            if not ok:
                raise NsmError(f"camera {self.name}: {self.path} has no readable frames")
        return _rgb_at(bgr, self.width, self.height)

    def _close(self) -> None:
        if self._video is not None:
            self._video.release()


def _rgb_at(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV's BGR frame as RGB at the contract's size (resized only if the source differs)."""
    if bgr.shape[:2] != (height, width):
        bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
