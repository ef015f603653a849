"""view_node: the robot's topics live in Rerun's web viewer, as foxglove_bridge does for Foxglove.

Subscribes to `joint_states`, `joint_commands`, `camera/<cam>/image_raw` and `action_chunk`
and streams them with the same entities as a recorded episode's view (`nsm dataset view`),
on a time axis of seconds since the node started (message stamps). It is its own process
and the callbacks only hand messages to nsm.viewer.live.LiveView's queue, so nothing here
can hold the control loop; Rerun's server (web viewer + stream) is a process of its own too.
`ros2 launch nsm bringup.launch.py view:=true` starts it; open the URL it logs.

/diagnostics: the URL, values sent, items dropped (never waited for).
"""
import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from trajectory_msgs.msg import JointTrajectory

from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, OK, SENSOR_QOS, declare, main_for, publish_diagnostics
from nsm.settings import ViewSettings
from nsm.viewer.live import LiveView
from nsm.viewer.server import grpc_url, serve_live, web_url


class ViewNode(Node):
    def __init__(self):
        super().__init__("view_node")
        p = declare(self, ViewSettings)
        contract = load_contract(p.robot)
        self.names = contract.joint_names
        cameras = [contract.camera(c).name for c in p.cameras]
        self.server = serve_live(p.web_port, p.grpc_port, p.host)
        self.url = web_url(p.host, p.web_port, p.grpc_port)
        self.view = LiveView(self.names, cameras, grpc_url(p.host, p.grpc_port), contract.period)
        self.t0 = self.now()
        self.get_logger().info(f"live view: {self.url}")
        self.create_subscription(JointState, "joint_states", lambda m: self.on_joints(m, self.view.state), COMMANDS_QOS)
        self.create_subscription(JointState, "joint_commands", lambda m: self.on_joints(m, self.view.command), COMMANDS_QOS)
        self.create_subscription(JointTrajectory, "action_chunk", self.on_chunk, COMMANDS_QOS)
        for cam in cameras:
            self.create_subscription(Image, f"camera/{cam}/image_raw", lambda m, c=cam: self.on_image(c, m), SENSOR_QOS)
        publish_diagnostics(self, self.report)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_joints(self, msg: JointState, send) -> None:
        try:
            send(convert.from_time(msg.header.stamp) - self.t0, convert.msg_to_positions(msg, self.names))
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)

    def on_image(self, camera: str, msg: Image) -> None:
        try:
            self.view.image(camera, convert.from_time(msg.header.stamp) - self.t0, convert.msg_to_image(msg))
        except NsmError as exc:
            self.get_logger().warning(f"camera {camera}: {exc}", throttle_duration_sec=5.0)

    def on_chunk(self, msg: JointTrajectory) -> None:
        try:
            stamp, _, positions = convert.msg_to_chunk(msg, self.names)
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        self.view.chunk(np.asarray(positions), stamp - self.t0, self.now() - self.t0)

    def report(self, now: float):
        return OK, "streaming", {"url": self.url, "sent": self.view.sent, "chunks": self.view.chunks_sent,
                                 "dropped": self.view.dropped}

    def destroy_node(self) -> None:
        self.view.close()
        self.server.terminate()
        self.server.wait()
        super().destroy_node()


main = main_for(ViewNode)
