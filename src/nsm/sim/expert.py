"""A scripted joint-space expert: a fixed, smooth tour of waypoints.

It stands in for a learned policy in `nsm demo` and exercises the same path (observation ->
chunk -> async queue -> safety -> arm). It does not look at the cube: the pick-and-place
expert with inverse kinematics comes with the robot work (issue 5).
"""
import numpy as np

from nsm.contract import Observation, RobotContract

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

    def reset(self) -> None:
        """Nothing to forget: the pose depends only on the step."""

    def pose_at(self, t: float) -> np.ndarray:
        t = t % self._bounds[-1]
        k = int(np.searchsorted(self._bounds, t, side="right") - 1)
        s = (t - self._bounds[k]) / self._durations[k]
        ease = 0.5 - 0.5 * np.cos(np.pi * s)
        return self._starts[k] + ease * (self._ends[k] - self._starts[k])

    def predict_chunk(self, obs: Observation) -> np.ndarray:
        return np.stack([self.pose_at((obs.step + i) / self.fps) for i in range(self.chunk_size)])


GRIPPER_OPEN = 1.0  # rad: wide enough around the 40 mm cube at any yaw
GRIPPER_CLOSED = -0.17  # rad, the lower limit: the servo squeezes the cube at its force limit
GRASP_ABOVE_CENTRE = 0.015  # m: the pads pinch the cube's upper half
HOVER = 0.045  # m above the grasp height before descending and after releasing
CARRY = 0.05  # m the cube is lifted to move it (top-down reach ends ~0.06 m above the table)


class PickPlaceExpert:
    """`ChunkPolicy` that picks the cube and puts it on the goal, from ground truth.

    At `reset()` (after `SimScene.reset`, or once a mirror of the world holds the published
    cube pose and joint state) it reads the cube pose and plans the whole episode as joint
    targets at the control rate, row 0 at the first observation it is asked about: move
    above the cube, descend straight down, close, lift, carry, lower, open, retreat, return
    home. Straight Cartesian segments are solved point by point with `TopDownIK`, each
    seeded by the previous point, so the arm stays on
    one branch. The recorded action is joint positions, as on the real arm.
    """

    name = "scripted-pick-place-expert"

    def __init__(self, contract: RobotContract, scene, chunk_size: int = 30):
        from nsm.sim.ik import ARM_JOINTS, TopDownIK
        from nsm.sim.scene import GOAL

        if contract.joint_names != [*ARM_JOINTS, "gripper"]:
            raise ValueError(f"the pick-place expert drives the SO-101 joints {ARM_JOINTS} + gripper, "
                             f"robot {contract.robot} has {contract.joint_names}")
        self.contract, self.scene, self.chunk_size = contract, scene, chunk_size
        self.fps = contract.fps
        self.ik = TopDownIK(scene.model)
        self.goal = GOAL
        self.plan = np.empty((0, len(contract.joints)))
        self.jaw = np.zeros(3)  # the plan's closing direction, fixed to moving jaw (horizontal)
        self._first_step: int | None = None

    def reset(self) -> None:
        self.plan = self._plan()
        self._first_step = None

    def predict_chunk(self, obs: Observation) -> np.ndarray:
        if self._first_step is None:
            self._first_step = obs.step
        rows = np.minimum(obs.step - self._first_step + np.arange(self.chunk_size), len(self.plan) - 1)
        return self.plan[rows]

    @property
    def seconds(self) -> float:
        return len(self.plan) / self.fps

    def _grasp_jaw(self, cube: np.ndarray, yaw: float, start: np.ndarray) -> np.ndarray:
        """Which way the jaws close across the cube (fixed-to-moving jaw, horizontal).

        Two opposite faces can be held from either side, half a turn of wrist_roll apart.
        The one with less wrist roll at the cube keeps the wrist clear of the cube: grasps
        with more than ~2 rad of roll knock it over (measured over seeds). Both must also
        reach the goal top-down while the carried cube keeps its heading.
        """
        across = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
        best, best_roll = None, np.inf
        for jaw in (across, -across):
            (q, miss, tilt), goal = self.ik.solve(cube, jaw, start), self.ik.solve(self.place_at(cube), jaw, start)
            if max(miss, goal[1]) < 0.002 and max(tilt, goal[2]) < 0.1 and abs(q[4]) < best_roll:
                best, best_roll = jaw, abs(q[4])
        if best is None:
            raise RuntimeError(f"no top-down grasp reaches the cube at {cube.round(3)} and the goal at "
                               f"{self.goal.round(3)}; keep both nearer the base (CUBE_AREA, GOAL in nsm.sim.scene)")
        return best

    def place_at(self, grasp: np.ndarray) -> np.ndarray:
        """The grasp point that rests the cube (held at `grasp`) on the goal, 3 mm above."""
        return np.array([*self.goal, grasp[2] + 0.003])

    def _plan(self) -> np.ndarray:
        cube, yaw = self.scene.cube_pose()
        start, _ = self.scene.joint_state()
        grasp = cube + [0.0, 0.0, GRASP_ABOVE_CENTRE]
        self.jaw = jaw = self._grasp_jaw(grasp, yaw, start[:5])
        place = self.place_at(grasp)
        up = np.array([0.0, 0.0, HOVER])
        lift = np.array([0.0, 0.0, CARRY])
        above = self.ik.solve(grasp + up, jaw, start[:5])[0]
        segments = [
            self._joint_move(start, np.append(above, GRIPPER_OPEN), 1.6),
            self._line(grasp + up, grasp, jaw, above, GRIPPER_OPEN, 1.0),
        ]
        segments.append(self._hold(segments[-1][-1], GRIPPER_CLOSED, 0.7))
        segments.append(self._line(grasp, grasp + lift, jaw, segments[-1][-1][:5], GRIPPER_CLOSED, 0.8))
        segments.append(self._line(grasp + lift, place + lift, jaw, segments[-1][-1][:5], GRIPPER_CLOSED, 1.4))
        segments.append(self._line(place + lift, place, jaw, segments[-1][-1][:5], GRIPPER_CLOSED, 0.8))
        segments.append(self._hold(segments[-1][-1], GRIPPER_OPEN, 0.5))
        segments.append(self._line(place, place + up, jaw, segments[-1][-1][:5], GRIPPER_OPEN, 0.7))
        segments.append(self._joint_move(segments[-1][-1], np.asarray(self.contract.home, dtype=float), 1.5))
        segments.append(self._hold(segments[-1][-1], self.contract.home[-1], 0.5))
        return np.concatenate(segments)

    def _steps(self, seconds: float) -> np.ndarray:
        """Eased progress 0..1 over the control steps of a segment (excluding its start)."""
        s = np.arange(1, max(1, int(round(seconds * self.fps))) + 1) / max(1, int(round(seconds * self.fps)))
        return 0.5 - 0.5 * np.cos(np.pi * s)

    def _joint_move(self, a: np.ndarray, b: np.ndarray, seconds: float) -> np.ndarray:
        return a + self._steps(seconds)[:, None] * (b - a)

    def _hold(self, pose: np.ndarray, gripper: float, seconds: float) -> np.ndarray:
        return self._joint_move(pose, np.append(pose[:5], gripper), seconds)

    def _line(self, a: np.ndarray, b: np.ndarray, jaw: np.ndarray, seed: np.ndarray, gripper: float,
              seconds: float) -> np.ndarray:
        rows = []
        for s in self._steps(seconds):
            seed = self.ik.solve(a + s * (b - a), jaw, seed)[0]
            rows.append(np.append(seed, gripper))
        return np.array(rows)
