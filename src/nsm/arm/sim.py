"""The simulated arm: position targets into the MuJoCo scene's actuators."""
import time

import numpy as np

from nsm.arm.base import JointReading
from nsm.sim.scene import SimScene


class SimArm:
    """Arm backed by SimScene. Each `send` integrates one control period of physics,
    so simulated time advances exactly with the commands of the control loop."""

    def __init__(self, scene: SimScene):
        self.scene = scene
        self.torque_on = True

    def read(self) -> JointReading:
        position, velocity = self.scene.joint_state()
        return JointReading(position, velocity, self.scene.actuator_effort(), time.monotonic())

    def send(self, target: np.ndarray) -> None:
        self.scene.step(target)

    def set_torque(self, on: bool) -> None:
        self.scene.set_torque(on)
        self.torque_on = on

    def close(self) -> None:
        """Nothing to release: the scene belongs to whoever built it."""
