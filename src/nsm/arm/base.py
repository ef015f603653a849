"""The arm interface every backend implements: sim (MuJoCo) and so101 (LeRobot's Feetech driver)."""
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class JointReading:
    position: np.ndarray  # rad, contract joint order
    velocity: np.ndarray  # rad/s
    effort: np.ndarray  # actuator force/torque, backend units
    stamp: float  # time.monotonic() of the read


class Arm(Protocol):
    def read(self) -> JointReading:
        """The current joint state."""

    torque_on: bool

    def send(self, target: np.ndarray) -> None:
        """Command joint position targets (already checked by the safety filter)."""

    def set_torque(self, on: bool) -> None:
        """Motor torque on or off (the safety watchdog's last resort)."""

    def close(self) -> None:
        """Release the hardware (the driver node calls it on shutdown)."""
