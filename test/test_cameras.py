"""Camera sources beside the sim: a video file replayed in real time, a V4L2 device."""
import time

import cv2
import numpy as np
import pytest

from nsm.camera.opencv import OpenCVCamera, VideoFileCamera
from nsm.contract import CameraSpec
from nsm.errors import NsmError

SPEC = CameraSpec(name="front", width=64, height=48, fps=30)


def make_video(path, frames=10, size=(96, 72)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for k in range(frames):
        bgr = np.zeros((size[1], size[0], 3), np.uint8)
        bgr[:, :, 2] = 25 * k  # red channel (BGR order) encodes the frame number
        writer.write(bgr)
    writer.release()
    return path


def test_video_file_plays_in_real_time_loops_and_comes_out_rgb_at_the_contract_size(tmp_path):
    camera = VideoFileCamera(SPEC, make_video(tmp_path / "clip.avi")).start()
    try:
        time.sleep(1.0)
        frame = camera.latest()
    finally:
        camera.stop()
    assert frame.image.shape == (48, 64, 3) and frame.image.dtype == np.uint8
    red, blue = frame.image[..., 0].mean(), frame.image[..., 2].mean()
    assert red >= blue  # converted to RGB: the encoded channel is first
    assert camera.loops >= 2  # 10 frames at 30 fps: about three loops in a second
    assert 20 <= camera.measured_fps <= 36  # paced at the camera's rate, not as fast as decoding goes


def test_missing_video_and_device_are_one_clear_error(tmp_path):
    with pytest.raises(NsmError, match="video file .* does not exist"):
        VideoFileCamera(SPEC, tmp_path / "nope.avi")
    (tmp_path / "bad.avi").write_bytes(b"not a video")
    with pytest.raises(NsmError, match="is not a video OpenCV can read"):
        VideoFileCamera(SPEC, tmp_path / "bad.avi").start()
    with pytest.raises(NsmError, match=r"cannot open device '/dev/video99' \(video devices found: "):
        OpenCVCamera(SPEC, "/dev/video99").start(timeout=10)


class SlowCamera(VideoFileCamera):
    """A source that needs two periods per frame."""

    def _capture(self):
        time.sleep(2 / self.fps)
        return super()._capture()


def test_a_slow_source_counts_its_dropped_frames(tmp_path):
    camera = SlowCamera(SPEC, make_video(tmp_path / "clip.avi")).start()
    try:
        time.sleep(1.0)
    finally:
        camera.stop()
    assert 10 <= camera.frames <= 17  # about half of the 30 slots
    assert camera.dropped == pytest.approx(30 - camera.frames, abs=4)


def test_sim_cameras_render_the_scene_in_a_process_of_their_own_like_on_a_thread(contract):
    from nsm.camera.sim import ProcessSimCamera, SimCamera
    from nsm.sim.scene import SimScene

    scene = SimScene(contract, 5)
    for spec in contract.cameras:
        images = []
        for kind in (SimCamera, ProcessSimCamera):
            camera = kind(scene, spec).start()
            try:
                images.append(camera.latest().image)
            finally:
                camera.stop()
            assert camera.frames >= 1
        threaded, separate = images
        assert separate.shape == (spec.height, spec.width, 3) and separate.dtype == np.uint8
        assert separate.std() > 5 and np.array_equal(threaded, separate)  # the same scene, pixel for pixel
        assert not camera._process.is_alive()  # the render process ends with the camera
