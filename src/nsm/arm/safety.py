"""The one place between any command source and the arm that enforces the contract's limits.

Every command passes through `SafetyFilter.filter`: a command that is not a finite vector of
the right length is rejected (the arm holds its last safe command); a valid one is clamped
to the joint limits and to the largest change allowed per control step.
"""
import numpy as np

from nsm.contract import RobotContract


class SafetyFilter:
    def __init__(self, contract: RobotContract, start: np.ndarray):
        self._lower, self._upper = contract.lower, contract.upper
        self._max_step = contract.max_step
        self.last = np.clip(np.asarray(start, dtype=float), self._lower, self._upper)
        self.rejected = 0
        self.clamped = 0

    def filter(self, command: np.ndarray | None) -> np.ndarray:
        """The command to send this step; `None` (nothing queued) holds the last one."""
        if command is None:
            return self.last
        command = np.asarray(command, dtype=float)
        if command.shape != self.last.shape or not np.all(np.isfinite(command)):
            self.rejected += 1
            return self.last
        safe = np.clip(command, self.last - self._max_step, self.last + self._max_step)
        safe = np.clip(safe, self._lower, self._upper)
        if not np.array_equal(safe, command):
            self.clamped += 1
        self.last = safe
        return safe
