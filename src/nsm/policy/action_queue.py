"""Future actions indexed by control step, with overlapping chunks merged.

Two merge rules, as in the field:
- temporal ensembling (ACT): every prediction made for a step is averaged with weights
  exp(-m * i), i = 0 for the oldest prediction (ACT's rule; m = 0.01 in the paper);
- replace (LeRobot async inference style, `ensemble_coeff=None`): the newest chunk wins
  where chunks overlap.
"""
import numpy as np


class ActionQueue:
    def __init__(self, ensemble_coeff: float | None = None):
        self.ensemble_coeff = ensemble_coeff
        self._sum: dict[int, np.ndarray] = {}  # step -> weighted sum of predictions
        self._weight: dict[int, float] = {}  # step -> sum of weights
        self._count: dict[int, int] = {}  # step -> predictions seen

    def merge(self, chunk: np.ndarray, first_step: int, now: int = 0) -> None:
        """Add `chunk` whose row i is the action for step `first_step + i`; rows for steps
        before `now` arrived too late and are dropped."""
        for i, action in enumerate(chunk):
            step = first_step + i
            if step < now:
                continue
            if self.ensemble_coeff is None or step not in self._sum:
                self._sum[step], self._weight[step], self._count[step] = action.copy(), 1.0, 1
            else:
                w = float(np.exp(-self.ensemble_coeff * self._count[step]))
                self._sum[step] = self._sum[step] + w * action
                self._weight[step] += w
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
