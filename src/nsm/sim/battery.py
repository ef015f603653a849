"""A simulated battery whose drain follows the arm's actuator effort."""
import numpy as np


class SimBattery:
    """A 3S Li-ion pack (12.6 V full, 9.9 V empty) with an idle draw plus a load term."""

    def __init__(self, capacity_ah: float = 2.0, idle_current: float = 0.4, amps_per_effort: float = 0.6):
        self.capacity_ah = capacity_ah
        self.idle_current = idle_current
        self.amps_per_effort = amps_per_effort
        self.charge = 1.0  # 0..1
        self.current = idle_current  # A, the last update's draw
        self.voltage = 12.6

    def update(self, dt: float, effort: np.ndarray) -> None:
        """Drain the pack by `dt` seconds of drawing current for `effort`."""
        self.current = self.idle_current + self.amps_per_effort * float(np.abs(effort).sum())
        self.charge = max(0.0, self.charge - self.current * dt / 3600.0 / self.capacity_ah)
        self.voltage = 9.9 + 2.7 * self.charge - 0.05 * self.current  # linear OCV + internal resistance
