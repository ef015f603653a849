"""The one place between any command source and the arm that enforces the contract's limits.

Every control tick passes through `SafetyFilter.filter(command, now)`:
- a command that is not a finite vector of the right length is rejected (counted);
- a valid one is clamped to the joint limits and to the largest change per control step;
- no valid command (nothing queued, rejected, or the arm disabled): hold the last safe
  command; once commands have started to flow, `torque_off_after` seconds without a fresh
  one trip the watchdog: `torque_on` becomes False (the driver cuts motor torque) and stays
  so until `enable(True)`. Before the first command (a policy still loading) it only holds.
"""
import numpy as np

from nsm.contract import RobotContract


class SafetyFilter:
    def __init__(self, contract: RobotContract, start: np.ndarray, torque_off_after: float = 1.0):
        self._lower, self._upper = contract.lower, contract.upper
        self._max_step = contract.max_step
        self.last = np.clip(np.asarray(start, dtype=float), self._lower, self._upper)
        self.torque_off_after = torque_off_after
        self.enabled = True
        self.torque_on = True
        self._fresh_at: float | None = None  # time of the last valid command; None: none yet
        self.rejected = 0
        self.clamped = 0
        self.watchdog_trips = 0

    def enable(self, on: bool, position: np.ndarray) -> None:
        """Enable (resume from `position`, torque back on) or disable (hold; commands ignored)."""
        self.enabled = on
        if on:
            self.last = np.clip(np.asarray(position, dtype=float), self._lower, self._upper)
            self.torque_on = True
            self._fresh_at = None

    def filter(self, command: np.ndarray | None, now: float) -> np.ndarray:
        """The command to send this tick (check `torque_on` too)."""
        if command is not None:
            command = np.asarray(command, dtype=float)
            if command.shape != self.last.shape or not np.all(np.isfinite(command)):
                self.rejected += 1
                command = None
        if command is None or not self.enabled or not self.torque_on:
            if self.torque_on and self._fresh_at is not None and now - self._fresh_at > self.torque_off_after:
                self.torque_on = False
                self.watchdog_trips += 1
            return self.last
        self._fresh_at = now
        safe = np.clip(command, self.last - self._max_step, self.last + self._max_step)
        safe = np.clip(safe, self._lower, self._upper)
        if not np.array_equal(safe, command):
            self.clamped += 1
        self.last = safe
        return safe
