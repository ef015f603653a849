"""The simulated arm: position targets into the MuJoCo scene's actuators, and the simulated pack."""
import time

import numpy as np

from nsm.arm.base import BatteryReading, JointReading
from nsm.sim.battery import SimBattery
from nsm.sim.scene import SimScene


class SimArm:
    """Arm backed by SimScene. Each `send` integrates one control period of physics,
    so simulated time advances exactly with the commands of the control loop. The battery
    is the simulated pack, drained by the simulated effort over the simulated time."""

    def __init__(self, scene: SimScene, battery: SimBattery | None = None):
        self.scene = scene
        self.battery = battery or SimBattery()
        self.torque_on = True
        self._unbilled_steps = 0  # control periods since the battery was last updated

    def read(self) -> JointReading:
        position, velocity = self.scene.joint_state()
        return JointReading(position, velocity, self.scene.actuator_effort(), time.monotonic())

    def send(self, target: np.ndarray) -> None:
        self.scene.step(target)
        self._unbilled_steps += 1

    def set_torque(self, on: bool) -> None:
        self.scene.set_torque(on)
        self.torque_on = on

    def read_battery(self) -> BatteryReading:
        self.battery.update(self._unbilled_steps * self.scene.contract.period, self.scene.actuator_effort())
        self._unbilled_steps = 0
        b = self.battery
        return BatteryReading(b.voltage, b.current, b.charge, simulated=True)

    def close(self) -> None:
        """Nothing to release: the scene belongs to whoever built it."""
