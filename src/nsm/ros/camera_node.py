"""camera_node: one camera, publishing `camera/<name>/image_raw` (rgb8) at its rate.

Sources: `sim` renders the MuJoCo scene posed from `joint_states` (kinematics only: the
physics runs in the arm driver); `opencv` reads a V4L2 device (`device`: index or
/dev/videoN); `video` replays a file (`path`) in real time, looping. Capture runs on the
camera's own thread; the timer publishes each new frame once.
"""
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from nsm.camera.opencv import OpenCVCamera, VideoFileCamera
from nsm.camera.sim import SimCamera
from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, SENSOR_QOS, declare, main_for
from nsm.sim.scene import SimScene

SOURCES = ("sim", "opencv", "video")


class CameraNode(Node):
    def __init__(self):
        super().__init__("camera_node")
        p = declare(self, robot="so101", camera="front", source="sim", seed=0, device="0", path="")
        if p.source not in SOURCES:
            raise NsmError(f"camera_node: unknown source '{p.source}'; use one of {', '.join(SOURCES)}")
        self.contract = load_contract(p.robot)
        spec = self.contract.camera(p.camera)
        self.scene: SimScene | None = None
        if p.source == "sim":
            self.scene = SimScene(self.contract, p.seed)
            camera = SimCamera(self.scene, spec)
        elif p.source == "opencv":
            camera = OpenCVCamera(spec, int(p.device) if p.device.isdigit() else p.device)
        else:
            camera = VideoFileCamera(spec, Path(p.path))
        self.camera = camera.start()
        self.frame_id = f"{spec.name}_camera"
        self.last_seq = -1
        self.pub_image = self.create_publisher(Image, f"camera/{spec.name}/image_raw", SENSOR_QOS)
        self.create_subscription(JointState, "joint_states", self.on_joint_states, COMMANDS_QOS)
        self.create_timer(1.0 / spec.fps, self.tick)

    def on_joint_states(self, msg: JointState) -> None:
        if self.scene is None:
            return
        try:
            self.scene.set_joint_positions(convert.msg_to_positions(msg, self.contract.joint_names))
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)

    def tick(self) -> None:
        frame = self.camera.latest()
        if frame is not None and frame.seq != self.last_seq:
            self.last_seq = frame.seq
            stamp = self.get_clock().now().nanoseconds * 1e-9
            self.pub_image.publish(convert.image_to_msg(frame.image, stamp, self.frame_id))

    def destroy_node(self) -> None:
        self.camera.stop()
        super().destroy_node()


main = main_for(CameraNode)
