"""The arm interface every backend implements: sim (MuJoCo) and so101 (LeRobot's Feetech driver).

Each backend owns what it can measure, the battery included: a real arm never reports a
simulated value; what it cannot measure is NaN (sensor_msgs/BatteryState's "unknown").
"""
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class JointReading:
    position: np.ndarray  # rad, contract joint order
    velocity: np.ndarray  # rad/s
    effort: np.ndarray  # actuator force/torque, backend units
    stamp: float  # time.monotonic() of the read


@dataclass(frozen=True)
class BatteryReading:
    voltage: float  # V
    current: float  # A drawn (positive = discharging); NaN: not measured
    percentage: float  # 0..1, as sensor_msgs/BatteryState; NaN: unknown
    simulated: bool  # True only from the simulated pack


class Arm(Protocol):
    def read(self) -> JointReading:
        """The current joint state."""

    torque_on: bool

    def send(self, target: np.ndarray) -> None:
        """Command joint position targets (already checked by the safety filter)."""

    def set_torque(self, on: bool) -> None:
        """Motor torque on or off (the safety watchdog's last resort)."""

    def read_battery(self) -> BatteryReading:
        """The supply as this backend measures it (the control loop asks once a second)."""

    def close(self) -> None:
        """Release the hardware (the driver node calls it on shutdown)."""
