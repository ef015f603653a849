"""Inverse kinematics of the simulated SO-101 for top-down grasps.

The SO-101 has five arm joints. A top-down grasp fixes five things: where the point between
the jaws is (3) and that the gripper points straight down (2); the jaw direction then rests
on wrist_roll alone, which is set by a sixth row. Damped least squares (Levenberg-Marquardt)
on MuJoCo's own Jacobians solves all six rows; it works on a private MjData, so it never
touches the physics the arm runs on.
"""
import mujoco
import numpy as np

ARM_JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
SITE = "gripperframe"  # on the fixed jaw's inner face; x along the jaws, z toward the moving jaw
PADS = ("fixed_jaw_pad", "moving_jaw_pad")
GRASP_JAW_ANGLE = 0.46  # rad: the two pads are parallel and 40 mm apart (the MJCF's note)
DOWN = np.array([0.0, 0.0, -1.0])
ROLL_ALIGN_ITERATIONS = 3
ORIENTATION_WEIGHT = 0.05  # m of position error traded for one rad of orientation error


class TopDownIK:
    """Joint angles that put the grasp point at a position with the jaws along a direction."""

    def __init__(self, model: mujoco.MjModel, damping: float = 1e-3, tolerance: float = 1e-5, iterations: int = 100):
        self.model = model
        self.data = mujoco.MjData(model)
        self.qadr = np.array([model.joint(n).qposadr[0] for n in ARM_JOINTS])
        self.dofs = np.array([model.joint(n).dofadr[0] for n in ARM_JOINTS])
        self.lower, self.upper = model.jnt_range[[model.joint(n).id for n in ARM_JOINTS]].T
        self.roll = model.joint("wrist_roll").id
        self.site = model.site(SITE).id
        self.body = model.site_bodyid[self.site]
        self.damping, self.tolerance, self.iterations = damping, tolerance, iterations
        self.offset = self._grasp_offset()

    def _grasp_offset(self) -> np.ndarray:
        """The midpoint of the fingertip pads at the grasp jaw angle, in the site frame."""
        self.data.qpos[self.model.joint("gripper").qposadr[0]] = GRASP_JAW_ANGLE
        mujoco.mj_kinematics(self.model, self.data)
        mid = np.mean([self.data.geom_xpos[self.model.geom(p).id] for p in PADS], axis=0)
        return self.data.site_xmat[self.site].reshape(3, 3).T @ (mid - self.data.site_xpos[self.site])

    def _pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)  # mj_jac needs the com-based frames
        rot = self.data.site_xmat[self.site].reshape(3, 3).copy()
        return self.data.site_xpos[self.site] + rot @ self.offset, rot

    def _roll_to(self, axis: np.ndarray, wanted: np.ndarray) -> float:
        """Signed wrist_roll turn that brings `axis` to `wanted`, seen along the roll axis."""
        hinge = self.data.xaxis[self.roll]
        a, b = axis - (axis @ hinge) * hinge, wanted - (wanted @ hinge) * hinge
        return float(np.arctan2(np.cross(a, b) @ hinge, a @ b))

    def grasp_point(self, q: np.ndarray) -> np.ndarray:
        return self._pose(q)[0]

    def jaw_axis(self, q: np.ndarray) -> np.ndarray:
        """The direction from the fixed to the moving jaw at arm joints `q` (world, unit)."""
        return self._pose(q)[1][:, 2]

    def solve(self, target: np.ndarray, jaw: np.ndarray, seed: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Arm joints (ARM_JOINTS order), the position error left (m) and the orientation error (rad).

        Where the wrist cannot reach straight down (high above the table, far from the base)
        the weighting keeps the position and gives up some tilt.

        `jaw` is the horizontal direction from the fixed to the moving jaw. The solver
        converges to the solution nearest `seed`, which is how callers keep a motion on one
        branch: seed every waypoint with the previous one.
        """
        wanted = np.column_stack([DOWN, np.cross(jaw, DOWN), jaw])  # site axes x, y, z in the world
        q = np.clip(np.asarray(seed, dtype=float).copy(), self.lower, self.upper)
        jp, jr = np.zeros((3, self.model.nv)), np.zeros((3, self.model.nv))
        for i in range(self.iterations):
            point, rot = self._pose(q)
            if i < ROLL_ALIGN_ITERATIONS:  # the jaws may be half a turn away: small-angle steps would stall
                q[4] = np.clip(q[4] + self._roll_to(rot[:, 2], jaw), self.lower[4], self.upper[4])
                point, rot = self._pose(q)
            turn = wanted @ rot.T  # the rotation still to go; its skew part is the small-angle rotation vector
            tilt = 0.5 * np.array([turn[2, 1] - turn[1, 2], turn[0, 2] - turn[2, 0], turn[1, 0] - turn[0, 1]])
            error = np.concatenate([target - point, ORIENTATION_WEIGHT * tilt])
            if np.linalg.norm(error) < self.tolerance:
                break
            mujoco.mj_jac(self.model, self.data, jp, jr, point, self.body)
            jac = np.vstack([jp[:, self.dofs], ORIENTATION_WEIGHT * jr[:, self.dofs]])
            step = np.linalg.solve(jac.T @ jac + self.damping * np.eye(5), jac.T @ error)
            q = np.clip(q + step, self.lower, self.upper)
            if np.linalg.norm(step) < 1e-5:  # converged as far as this pose allows (e.g. at a limit)
                break
        point, rot = self._pose(q)
        return q, float(np.linalg.norm(target - point)), float(np.arccos(np.clip(rot[:, 0] @ DOWN, -1, 1)))
