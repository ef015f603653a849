"""A scripted joint-space expert: a fixed, smooth tour of waypoints.

It stands in for a learned policy in `nsm demo` and exercises the same path (observation ->
chunk -> async queue -> safety -> arm). It does not look at the cube: the pick-and-place
expert with inverse kinematics comes with the robot work (issue 5).
"""
import numpy as np

from nsm.contract import RobotContract
from nsm.policy.base import Observation

# (seconds to reach, pose) in contract joint order:
# shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper
TOUR = (
    (1.0, (0.0, -1.2, 1.2, 0.6, 0.0, 1.2)),  # open the gripper
    (1.5, (0.0, 0.3, 0.2, 1.1, 0.0, 1.2)),  # reach down toward the table
    (0.7, (0.0, 0.3, 0.2, 1.1, 0.0, 0.0)),  # close
    (1.2, (0.4, -0.6, 0.6, 0.8, 0.5, 0.0)),  # lift and turn
    (0.8, (0.4, -0.6, 0.6, 0.8, 0.5, 1.2)),  # open
    (1.3, (0.0, -1.2, 1.2, 0.6, 0.0, 0.0)),  # back home
)


class WaypointExpert:
    """`ChunkPolicy` that follows TOUR (looping) with cosine-eased segments."""

    name = "scripted-waypoint-expert"

    def __init__(self, contract: RobotContract, chunk_size: int = 30):
        self.chunk_size = chunk_size
        self.fps = contract.fps
        poses = [np.asarray(contract.home, dtype=float)] + [np.asarray(p, dtype=float) for _, p in TOUR]
        if any(len(p) != len(contract.joints) for p in poses):
            raise ValueError(f"TOUR poses need {len(contract.joints)} joints for robot {contract.robot}")
        self._starts = poses[:-1]
        self._ends = poses[1:]
        self._durations = np.array([d for d, _ in TOUR])
        self._bounds = np.concatenate([[0.0], np.cumsum(self._durations)])

    def pose_at(self, t: float) -> np.ndarray:
        t = t % self._bounds[-1]
        k = int(np.searchsorted(self._bounds, t, side="right") - 1)
        s = (t - self._bounds[k]) / self._durations[k]
        ease = 0.5 - 0.5 * np.cos(np.pi * s)
        return self._starts[k] + ease * (self._ends[k] - self._starts[k])

    def predict_chunk(self, obs: Observation) -> np.ndarray:
        return np.stack([self.pose_at((obs.step + i) / self.fps) for i in range(self.chunk_size)])
