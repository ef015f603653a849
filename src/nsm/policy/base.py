"""What a policy is: one observation (nsm.contract.Observation) in, a chunk of actions out."""
from typing import Protocol

import numpy as np

from nsm.contract import Observation


class ChunkPolicy(Protocol):
    """Maps one observation to the next `chunk_size` actions (row i is for step obs.step + i)."""

    name: str
    chunk_size: int

    def reset(self) -> None:
        """Forget the previous episode (observation history, a plan); called as each episode starts."""

    def predict_chunk(self, obs: Observation) -> np.ndarray:
        """(chunk_size, n_joints) joint position targets."""
