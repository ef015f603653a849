"""recorder_node: HDF5 episodes from the live topics, started and stopped by service.

One frame per `joint_commands` message (one per control tick): the command is the
`action`, the newest `joint_states` the observation, the newest image of each camera the
images. Services `recorder/start_episode` and `recorder/stop_episode` (std_srvs/Trigger).
"""
from pathlib import Path

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.recording.background import EpisodeFrame
from nsm.recording.hdf5_writer import Hdf5EpisodeWriter, next_episode_path
from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, SENSOR_QOS, declare, main_for


class RecorderNode(Node):
    def __init__(self):
        super().__init__("recorder_node")
        p = declare(self, robot="so101", out="runs/episodes", cameras=["front"], sim=True, policy="unknown",
                    compression="none")
        self.contract = load_contract(p.robot)
        self.names = self.contract.joint_names
        self.cameras = [self.contract.camera(c).name for c in p.cameras]
        self.out, self.sim, self.policy = Path(p.out), p.sim, p.policy
        if p.compression not in ("none", "lzf"):
            raise NsmError(f"recorder_node: unknown compression '{p.compression}'; use none or lzf")
        self.compression = None if p.compression == "none" else p.compression
        self.writer: Hdf5EpisodeWriter | None = None
        self.state: JointState | None = None
        self.images: dict[str, np.ndarray] = {}
        self.t0 = 0.0
        self.create_subscription(JointState, "joint_states", self.on_state, COMMANDS_QOS)
        self.create_subscription(JointState, "joint_commands", self.on_command, COMMANDS_QOS)
        for cam in self.cameras:
            self.create_subscription(Image, f"camera/{cam}/image_raw", lambda m, c=cam: self.on_image(c, m), SENSOR_QOS)
        self.create_service(Trigger, "recorder/start_episode", self.on_start)
        self.create_service(Trigger, "recorder/stop_episode", self.on_stop)

    def on_state(self, msg: JointState) -> None:
        self.state = msg

    def on_image(self, camera: str, msg: Image) -> None:
        try:
            self.images[camera] = convert.msg_to_image(msg)
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)

    def on_command(self, msg: JointState) -> None:
        if self.writer is None or self.state is None or set(self.images) != set(self.cameras):
            return
        try:
            qpos = convert.msg_to_positions(self.state, self.names)
            action = convert.msg_to_positions(msg, self.names)
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        stamp = convert.from_time(msg.header.stamp)
        self.writer.add_frame(EpisodeFrame(qpos, np.asarray(self.state.velocity, float), action, dict(self.images),
                                           stamp - self.t0))

    def on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.writer is not None:
            response.success, response.message = False, f"already recording {self.writer.path}"
            return response
        try:
            self.writer = Hdf5EpisodeWriter(next_episode_path(self.out), self.contract, self.cameras,
                                            sim=self.sim, policy=self.policy, compression=self.compression)
        except NsmError as exc:
            response.success, response.message = False, str(exc)
            return response
        self.t0 = self.get_clock().now().nanoseconds * 1e-9
        response.success, response.message = True, str(self.writer.path)
        return response

    def on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.writer is None:
            response.success, response.message = False, "not recording"
            return response
        writer, self.writer = self.writer, None
        try:
            response.success, response.message = True, f"{writer.close()} ({writer.frames} frames)"
        except NsmError as exc:
            response.success, response.message = False, str(exc)
        return response


main = main_for(RecorderNode)
