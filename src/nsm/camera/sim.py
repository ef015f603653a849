"""Cameras rendered from the MuJoCo scene, headless (EGL; software GL here).

`SimCamera` renders on a thread of the robot's process; `ProcessSimCamera` renders in a
process of its own, so the GL work (seconds of CPU per second on software GL) never holds
the control loop's interpreter: its thread only hands over the joint positions and copies
the finished image out of shared memory.
"""
import multiprocessing
import os
from multiprocessing.shared_memory import SharedMemory

import mujoco
import numpy as np

from nsm.camera.base import Camera
from nsm.contract import CameraSpec, RobotContract
from nsm.sim.scene import SimScene, build_model

RENDER_NICE = 5  # a late frame is better than a late control tick


class SimCamera(Camera):
    """Renders `spec.name` from a snapshot of the scene, on the camera's own thread."""

    def __init__(self, scene: SimScene, spec: CameraSpec):
        super().__init__(spec.name, spec.width, spec.height, spec.fps)
        self._scene = scene
        self._renderer: mujoco.Renderer | None = None
        self._data = mujoco.MjData(scene.model)

    def _open(self) -> None:
        self._renderer = mujoco.Renderer(self._scene.model, self.height, self.width)

    def _capture(self) -> np.ndarray:
        self._scene.snapshot(self._data)
        self._renderer.update_scene(self._data, camera=self.name)
        return self._renderer.render()

    def _close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()


def _render_worker(contract: RobotContract, camera: str, height: int, width: int, shm_name: str, conn) -> None:
    """The render process: joint positions in over `conn`, the image out through shared memory."""
    os.nice(RENDER_NICE)
    model = build_model(contract)
    data = mujoco.MjData(model)
    shm = SharedMemory(shm_name)
    image = np.ndarray((height, width, 3), np.uint8, shm.buf)
    try:
        with mujoco.Renderer(model, height, width) as renderer:
            conn.send_bytes(b"ready")
            while qpos := conn.recv_bytes():
                data.qpos[:] = np.frombuffer(qpos, np.float64)
                mujoco.mj_kinematics(model, data)
                mujoco.mj_camlight(model, data)
                renderer.update_scene(data, camera=camera)
                renderer.render(out=image)
                conn.send_bytes(b"")
    finally:
        del image
        shm.close()


class ProcessSimCamera(Camera):
    """Like SimCamera, but the rendering runs in a spawned process (same model, same image)."""

    def __init__(self, scene: SimScene, spec: CameraSpec):
        super().__init__(spec.name, spec.width, spec.height, spec.fps)
        self._scene = scene
        self._shm: SharedMemory | None = None
        self._conn = None
        self._process = None

    def _open(self) -> None:
        self._shm = SharedMemory(create=True, size=self.height * self.width * 3)
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with GL and threads
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_render_worker, name=f"render-{self.name}", daemon=True,
                                    args=(self._scene.contract, self.name, self.height, self.width, self._shm.name, child))
        self._process.start()
        child.close()
        if not self._conn.poll(60) or self._conn.recv_bytes() != b"ready":
            raise RuntimeError(f"camera {self.name}: the render process did not start")
        self._image = np.ndarray((self.height, self.width, 3), np.uint8, self._shm.buf)

    def _capture(self) -> np.ndarray:
        self._conn.send_bytes(self._scene.qpos().tobytes())
        self._conn.recv_bytes()  # waits without the GIL while the other process renders
        return self._image.copy()

    def _close(self) -> None:
        if self._process is not None:
            try:
                self._conn.send_bytes(b"")
            except OSError:
                pass  # the process is gone already
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
        if self._shm is not None:
            self._image = None
            self._shm.close()
            self._shm.unlink()
