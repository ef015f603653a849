"""camera_node: one camera, publishing `camera/<name>/image_raw` (rgb8) at its rate, with
`camera_info` and, while anyone subscribes, `image_raw/compressed` (JPEG, image_transport's name).

Sources: `sim` renders the one simulated world the arm driver steps: the arm posed from
`joint_states`, the cube from `sim/cube_pose` (kinematics only: the physics runs in the
arm driver, so the cube moves in the image when the gripper carries it); `opencv` reads a V4L2 device (`device`: index or
/dev/videoN); `video` replays a file (`path`) in real time, looping. Capture runs on the
camera's own thread; the timer publishes each new frame once. /diagnostics: published
rate, capture rate, capture slots the source missed, and frame age at publishing.
"""
import time
from pathlib import Path

from geometry_msgs.msg import PoseStamped
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState

from nsm.camera.opencv import OpenCVCamera, VideoFileCamera
from nsm.camera.sim import SimCamera
from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, OK, SENSOR_QOS, WARN, declare, main_for, publish_diagnostics, rate_values
from nsm.settings import CameraSettings
from nsm.sim.scene import SimScene
from nsm.stats import RateMeter


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera_node")
        p = declare(self, CameraSettings)
        self.contract = load_contract(p.robot)
        spec = self.contract.camera(p.camera)
        self.scene: SimScene | None = None
        fovy = None
        if p.source == "sim":
            self.scene = SimScene(self.contract)
            camera = SimCamera(self.scene, spec)
            fovy = self.scene.camera_fovy(spec.name)
        elif p.source == "opencv":
            camera = OpenCVCamera(spec, int(p.device) if p.device.isdigit() else p.device)
        else:
            camera = VideoFileCamera(spec, Path(p.path))
        self.camera = camera.start()
        self.frame_id = f"{spec.name}_camera"
        self.spec, self.fovy = spec, fovy
        self.last_seq = -1
        # sim: frames are published once they show the world the arm driver steps (both poses arrived)
        self.world_at: float | None = None if self.scene is not None else 0.0
        self.world_inputs: set[str] = set()
        self.published = RateMeter()
        self.frame_age = 0.0  # s from capture to publishing, last frame
        topic = f"camera/{spec.name}/image_raw"
        self.pub_image = self.create_publisher(Image, topic, SENSOR_QOS)
        self.pub_compressed = self.create_publisher(CompressedImage, f"{topic}/compressed", SENSOR_QOS)
        self.pub_info = self.create_publisher(CameraInfo, f"camera/{spec.name}/camera_info", SENSOR_QOS)
        if self.scene is not None:
            self.create_subscription(JointState, "joint_states", self.on_joint_states, COMMANDS_QOS)
            self.create_subscription(PoseStamped, "sim/cube_pose", self.on_cube_pose, COMMANDS_QOS)
        self.create_timer(1.0 / spec.fps, self.tick)
        publish_diagnostics(self, self.report)

    def on_joint_states(self, msg: JointState) -> None:
        try:
            self.scene.set_joint_positions(convert.msg_to_positions(msg, self.contract.joint_names))
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        self._world_input("joint_states")

    def on_cube_pose(self, msg: PoseStamped) -> None:
        self.scene.set_cube_qpos(convert.msg_to_pose(msg))
        self._world_input("cube_pose")

    def _world_input(self, name: str) -> None:
        if self.world_at is None:
            self.world_inputs.add(name)
            if len(self.world_inputs) == 2:
                self.world_at = time.monotonic()

    def tick(self) -> None:
        frame = self.camera.latest()
        if frame is not None and frame.seq != self.last_seq and self.world_at is not None and frame.stamp >= self.world_at:
            self.last_seq = frame.seq
            self.frame_age = time.monotonic() - frame.stamp
            # the header says when the frame was taken (the ROS convention), not when it is sent:
            # a subscriber can tell a frame of the world before a reset from one after it
            stamp = self.get_clock().now().nanoseconds * 1e-9 - self.frame_age
            self.pub_image.publish(convert.image_to_msg(frame.image, stamp, self.frame_id))
            self.pub_info.publish(convert.camera_info_msg(self.spec.width, self.spec.height, stamp, self.frame_id,
                                                          self.fovy))
            if self.pub_compressed.get_subscription_count():  # JPEG only for someone watching
                self.pub_compressed.publish(convert.image_to_compressed_msg(frame.image, stamp, self.frame_id))
            self.published.tick(stamp)

    def report(self, now: float):
        rate = self.published.rate(now)
        level, message = (OK, "ok") if rate >= 0.8 * self.spec.fps else (WARN, f"publishing {rate:.1f} of {self.spec.fps:g} fps")
        return level, message, {**rate_values({"published": self.published}, now),
                                "capture_hz": round(self.camera.measured_fps, 2), "dropped": self.camera.dropped,
                                "frame_age_ms": round(1000 * self.frame_age, 1)}

    def destroy_node(self) -> None:
        self.camera.stop()
        super().destroy_node()


main = main_for(CameraNode)
