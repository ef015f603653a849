"""A camera rendered from the MuJoCo scene, headless (EGL, software GL here)."""
import mujoco
import numpy as np

from nsm.camera.base import Camera
from nsm.contract import CameraSpec
from nsm.sim.scene import SimScene


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
