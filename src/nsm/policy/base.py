"""What a policy sees and what it returns."""
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Observation:
    step: int  # control step the observation was taken at
    stamp: float  # time.monotonic() of the joint reading
    state: np.ndarray  # joint positions, contract order
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera name -> (H, W, 3) uint8


class ChunkPolicy(Protocol):
    """Maps one observation to the next `chunk_size` actions (row i is for step obs.step + i)."""

    name: str
    chunk_size: int

    def reset(self) -> None:
        """Forget the previous episode (observation history, a plan); called as each episode starts."""

    def predict_chunk(self, obs: Observation) -> np.ndarray:
        """(chunk_size, n_joints) joint position targets."""
