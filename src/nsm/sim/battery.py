"""A simulated battery whose drain follows the arm's actuator effort."""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatteryReading:
    voltage: float  # V
    current: float  # A (positive = discharging)
    percentage: float  # 0..1, as sensor_msgs/BatteryState


class SimBattery:
    """A 3S Li-ion pack (12.6 V full, 9.9 V empty) with an idle draw plus a load term."""

    def __init__(self, capacity_ah: float = 2.0, idle_current: float = 0.4, amps_per_effort: float = 0.6):
        self.capacity_ah = capacity_ah
        self.idle_current = idle_current
        self.amps_per_effort = amps_per_effort
        self.charge = 1.0

    def update(self, dt: float, effort: np.ndarray) -> BatteryReading:
        current = self.idle_current + self.amps_per_effort * float(np.abs(effort).sum())
        self.charge = max(0.0, self.charge - current * dt / 3600.0 / self.capacity_ah)
        voltage = 9.9 + 2.7 * self.charge - 0.05 * current  # linear OCV + internal resistance
        return BatteryReading(voltage, current, self.charge)
