"""policy_node: the newest joint state in, action chunks out, inference off the executor.

`model_path` names a LeRobot policy folder (run on `backend`; it also subscribes
`camera/<name>/image_raw` for every camera the policy needs). Empty: the scripted `expert`,
`pick_place` (simulation only: it plans from the ground truth the arm driver publishes,
`sim/cube_pose`, which a learned policy never sees) or `waypoint` (a fixed joint tour).
The AsyncChunkRuntime decides when a new chunk is due (its shadow queue runs low) and runs
the policy on its worker; each chunk is published on `action_chunk` stamped with the time
of the observation it was computed from, so the arm driver aligns it by control step.
/diagnostics: input rates (joint_states, each camera), chunks published, inference
latency (last, p50, max), observations refused as too old, and the last inference error.
"""
import numpy as np
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from nsm.contract import Observation, load_contract
from nsm.errors import NsmError
from nsm.policy.base import ChunkPolicy
from nsm.policy.lerobot_policy import LeRobotChunkPolicy
from nsm.policy.runtime import AsyncChunkRuntime
from nsm.ros import convert
from nsm.ros.node_main import (
    COMMANDS_QOS,
    ERROR,
    OK,
    SENSOR_QOS,
    WARN,
    ManagedNode,
    declare,
    main_for,
    publish_diagnostics,
    rate_values,
)
from nsm.settings import PolicySettings
from nsm.sim.expert import PickPlaceExpert, WaypointExpert
from nsm.sim.scene import SimScene
from nsm.stats import RateMeter


class PolicyNode(ManagedNode):
    """Managed: configure loads the model (or plans nothing yet: the experts), activate starts
    inference, deactivate stops it (no more chunks: the driver's queue runs dry and it holds),
    cleanup releases the model."""

    def __init__(self):
        super().__init__("policy_node")
        self.p = declare(self, PolicySettings)
        self.contract = load_contract(self.p.robot)
        self.names = self.contract.joint_names
        self.images: dict[str, np.ndarray] = {}
        self.cameras: list[str] = []
        self.policy: ChunkPolicy | None = None
        self.runtime: AsyncChunkRuntime | None = None
        self.world: SimScene | None = None  # pick_place: a mirror of the simulated world it plans in
        self.cube_pose: np.ndarray | None = None
        self.inputs = []  # subscriptions of the loaded policy's inputs (cameras, the cube pose)
        self.latest: tuple[float, np.ndarray] | None = None
        self.t0: float | None = None
        self.rates = {"joint_states": RateMeter(), "chunks": RateMeter()}
        self.pub_chunk = self.create_publisher(JointTrajectory, "action_chunk", COMMANDS_QOS)
        self.create_subscription(JointState, "joint_states", self.on_joint_states, COMMANDS_QOS)
        self.create_timer(self.contract.period, self.tick)
        publish_diagnostics(self, self.report)

    def configure(self) -> None:
        p = self.p
        if p.model_path:
            self.policy = LeRobotChunkPolicy(p.model_path, p.backend, self.contract)
            self.cameras = list(self.policy.features.cameras)
        elif p.expert == "pick_place":
            self.world = SimScene(self.contract)
            self.policy = PickPlaceExpert(self.contract, self.world, p.chunk_size)
            self.inputs.append(self.create_subscription(PoseStamped, "sim/cube_pose", self.on_cube_pose, COMMANDS_QOS))
            self.rates["cube_pose"] = RateMeter()
        else:
            self.policy = WaypointExpert(self.contract, p.chunk_size)
        for cam in self.cameras:
            self.rates[cam] = RateMeter()
            self.inputs.append(self.create_subscription(Image, f"camera/{cam}/image_raw",
                                                        lambda m, c=cam: self.on_image(c, m), SENSOR_QOS))
        self.get_logger().info(f"policy {self.policy.name}, chunk {self.policy.chunk_size}")

    def activate(self) -> None:
        p = self.p
        self.runtime = AsyncChunkRuntime(self.policy, len(self.names), p.threshold, max_obs_age=p.max_obs_age,
                                         on_chunk=self.publish_chunk, clock=self.now)
        self.t0 = None
        if self.world is None:
            self.runtime.start()  # the pick-place expert starts once the world's state has arrived (tick)

    def deactivate(self) -> None:
        """Stop inference and forget the inputs: a re-activation (e.g. after the world was
        reset) waits for fresh ones instead of acting on the old world's last frames."""
        runtime, self.runtime = self.runtime, None
        if runtime is not None:
            runtime.stop()
        self.latest, self.images, self.cube_pose = None, {}, None

    def release(self) -> None:
        self.deactivate()
        for sub in self.inputs:
            self.destroy_subscription(sub)
        self.inputs, self.cameras, self.images = [], [], {}
        self.policy, self.world, self.cube_pose = None, None, None
        self.rates = {"joint_states": self.rates["joint_states"], "chunks": self.rates["chunks"]}

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_joint_states(self, msg: JointState) -> None:
        try:
            self.latest = (convert.from_time(msg.header.stamp), convert.msg_to_positions(msg, self.names))
            self.rates["joint_states"].tick(self.now())
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)

    def on_image(self, camera: str, msg: Image) -> None:
        try:
            self.images[camera] = convert.msg_to_image(msg)
            self.rates[camera].tick(self.now())
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)

    def on_cube_pose(self, msg: PoseStamped) -> None:
        self.cube_pose = convert.msg_to_pose(msg)
        self.rates["cube_pose"].tick(self.now())

    def tick(self) -> None:
        runtime = self.runtime
        if runtime is None or self.latest is None or len(self.images) < len(self.cameras):
            return  # not active, or not every input has arrived yet
        stamp, state = self.latest
        if self.world is not None and not runtime.started:
            if self.cube_pose is None:
                return
            self.world.set_joint_positions(state)  # the expert plans from the world as published
            self.world.set_cube_qpos(self.cube_pose)
            runtime.start()
        self.t0 = stamp if self.t0 is None else self.t0
        step = int(round((stamp - self.t0) / self.contract.period))
        runtime.act(Observation(step, stamp, state, dict(self.images)))
        if runtime.error is not None:
            self.get_logger().error(f"inference failed: {runtime.error}", throttle_duration_sec=5.0)

    def publish_chunk(self, chunk: np.ndarray, obs: Observation) -> None:
        self.pub_chunk.publish(convert.chunk_to_msg(self.names, chunk, obs.stamp, self.contract.period))
        self.rates["chunks"].tick(self.now())

    def report(self, now: float):
        values = rate_values(self.rates, now)
        runtime = self.runtime
        if runtime is None:
            state = "inactive: no inference" if self.policy is not None else "unconfigured: no model loaded"
            return OK, state, values | {"state": state.split(":")[0]}
        latencies = np.array(runtime.latencies[-100:]) * 1000  # ms, the last 100 inferences
        if len(latencies):
            values |= {"inference_ms_last": round(float(latencies[-1]), 1),
                       "inference_ms_p50": round(float(np.median(latencies)), 1),
                       "inference_ms_max": round(float(latencies.max()), 1)}
        values |= {"stale_observations": runtime.stale_observations, "bad_chunks": runtime.bad_chunks,
                   "error": str(runtime.error or "")}
        if runtime.error is not None:
            return ERROR, f"inference failed: {runtime.error}", values
        missing = [name for name in self.rates if name != "chunks" and self.rates[name].rate(now) == 0]
        if missing:
            return WARN, f"waiting for {', '.join(missing)}", values
        return OK, "ok", values


main = main_for(PolicyNode)
