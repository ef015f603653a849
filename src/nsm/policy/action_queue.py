"""Future actions indexed by control step, with overlapping chunks merged.

Merge rules, as in the field:
- `replace`: the newest chunk wins where chunks overlap (LeRobot's plain chunking);
- `ensemble`: ACT temporal ensembling — every prediction made for a step is averaged with
  weights exp(-m * i), i = 0 for the oldest (m = `coeff`, 0.01 in the ACT paper; LeRobot
  measured it below plain chunking on its own ACT, so measure before relying on it);
- `blend`: LeRobot async inference style — on overlap, new = coeff * new + (1 - coeff) * old.
"""
import numpy as np

MERGE_MODES = {"replace": None, "ensemble": 0.01, "blend": 0.7}  # mode -> default coeff


class ActionQueue:
    def __init__(self, mode: str = "replace", coeff: float | None = None):
        if mode not in MERGE_MODES:
            raise ValueError(f"unknown merge mode '{mode}'; use one of {', '.join(MERGE_MODES)}")
        self.mode = mode
        self.coeff = MERGE_MODES[mode] if coeff is None else coeff
        self._sum: dict[int, np.ndarray] = {}  # step -> (weighted sum of) predictions
        self._weight: dict[int, float] = {}  # step -> sum of weights
        self._count: dict[int, int] = {}  # step -> predictions seen

    def merge(self, chunk: np.ndarray, first_step: int, now: int = 0) -> None:
        """Add `chunk` whose row i is the action for step `first_step + i`; rows for steps
        before `now` arrived too late and are dropped."""
        for i, action in enumerate(chunk):
            step = first_step + i
            if step < now:
                continue
            if step not in self._sum or self.mode == "replace":
                self._sum[step], self._weight[step], self._count[step] = action.copy(), 1.0, 1
            elif self.mode == "ensemble":
                w = float(np.exp(-self.coeff * self._count[step]))
                self._sum[step] = self._sum[step] + w * action
                self._weight[step] += w
                self._count[step] += 1
            else:  # blend
                old = self._sum[step] / self._weight[step]
                self._sum[step], self._weight[step] = self.coeff * action + (1 - self.coeff) * old, 1.0
                self._count[step] += 1

    def pop(self, step: int) -> np.ndarray | None:
        """The merged action for `step` (None if nothing is queued); forgets older steps."""
        for old in [s for s in self._sum if s < step]:
            self._forget(old)
        if step not in self._sum:
            return None
        action = self._sum[step] / self._weight[step]
        self._forget(step)
        return action

    def remaining(self, step: int) -> int:
        """How many queued actions are for `step` or later."""
        return sum(1 for s in self._sum if s >= step)

    def _forget(self, step: int) -> None:
        del self._sum[step], self._weight[step], self._count[step]
