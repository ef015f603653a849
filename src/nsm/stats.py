"""Small statistics the reports share."""
import collections
import math


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a success rate (95% by default): honest at 0/N and N/N,
    where the normal approximation collapses to a zero-width interval."""
    if trials <= 0:
        raise ValueError("no trials")
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


class RateMeter:
    """Events per second over the last `window` seconds, and the total count: what each
    node reports per stream on /diagnostics. A stream that stops reads 0 after `window`."""

    def __init__(self, window: float = 2.0):
        self.window = window
        self.count = 0
        self.last: float | None = None  # time of the newest event
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        self.count += 1
        self.last = now
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)

    def age(self, now: float) -> float | None:
        """Seconds since the newest event; None before the first."""
        return None if self.last is None else now - self.last

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] < now - self.window:
            self._times.popleft()
