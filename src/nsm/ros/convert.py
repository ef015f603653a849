"""numpy <-> standard ROS 2 messages (what cv_bridge does for images, without needing it).

Images: `msg.data = array.tobytes()` is the fast path into rclpy (a memoryview or numpy
array for uint8[] goes element by element); on receive `np.frombuffer(msg.data)` is
zero-copy. CompressedImage follows image_transport's `compressed` plugin (nsm.image_codec),
so `rqt_image_view` and Foxglove show it.

Every message built here exists with the same fields in ROS 2 Humble (test_ros_convert
checks against the `rosbags` Humble typestore), so a Humble machine can subscribe.
"""
import math

import cv2
import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
from sensor_msgs.msg import BatteryState, CameraInfo, CompressedImage, Image, JointState
from std_msgs.msg import Header
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from nsm import image_codec
from nsm.errors import NsmError


def to_time(seconds: float) -> Time:
    sec = int(seconds // 1)
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)) % 1_000_000_000)


def from_time(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def image_to_msg(image: np.ndarray, stamp: float, frame_id: str) -> Image:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise NsmError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    h, w, _ = image.shape
    return Image(header=Header(stamp=to_time(stamp), frame_id=frame_id), height=h, width=w,
                 encoding="rgb8", is_bigendian=0, step=w * 3, data=image.tobytes())


def msg_to_image(msg: Image) -> np.ndarray:
    """(H, W, 3) RGB; rgb8 without a copy, bgr8 (what most USB camera drivers publish) converted."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise NsmError(f"image encoding '{msg.encoding}' is not supported; publish rgb8 or bgr8")
    if msg.step != msg.width * 3 or len(msg.data) != msg.height * msg.step:
        raise NsmError(f"image of {len(msg.data)} bytes does not match {msg.width}x{msg.height} {msg.encoding} "
                       f"(step {msg.step}); publish packed rows")
    image = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
    return image if msg.encoding == "rgb8" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_to_compressed_msg(image: np.ndarray, stamp: float, frame_id: str) -> CompressedImage:
    return CompressedImage(header=Header(stamp=to_time(stamp), frame_id=frame_id), format=image_codec.FORMAT,
                           data=image_codec.encode_jpeg(image).tobytes())


def compressed_msg_to_image(msg: CompressedImage) -> np.ndarray:
    return image_codec.decode_image(np.frombuffer(msg.data, np.uint8), msg.format)


def camera_info_msg(width: int, height: int, stamp: float, frame_id: str, fovy_deg: float | None = None) -> CameraInfo:
    """Pinhole intrinsics from the vertical field of view (the simulated cameras'); without
    one K stays zero, ROS's "uncalibrated" (a real camera's calibration belongs to camera_calibration)."""
    info = CameraInfo(header=Header(stamp=to_time(stamp), frame_id=frame_id), width=width, height=height,
                      distortion_model="plumb_bob", d=[0.0] * 5)
    if fovy_deg is not None:
        f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
        cx, cy = (width - 1) / 2, (height - 1) / 2
        info.k = [f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def joint_state_to_msg(names: list[str], stamp: float, position, velocity=None, effort=None) -> JointState:
    return JointState(header=Header(stamp=to_time(stamp)), name=list(names),
                      position=np.asarray(position, float).tolist(),
                      velocity=[] if velocity is None else np.asarray(velocity, float).tolist(),
                      effort=[] if effort is None else np.asarray(effort, float).tolist())


def msg_to_positions(msg: JointState, names: list[str]) -> np.ndarray:
    """Positions in contract order; a message with other joints is an error, never reordered silently."""
    if list(msg.name) != list(names) or len(msg.position) != len(names):
        raise NsmError(f"JointState with joints {list(msg.name)} and {len(msg.position)} positions, "
                       f"expected {list(names)}")
    return np.asarray(msg.position, float)


def chunk_to_msg(names: list[str], chunk: np.ndarray, stamp: float, period: float) -> JointTrajectory:
    """Row i of `chunk` is the target `i * period` after the observation time `stamp`."""
    points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=Duration(
        sec=int(i * period), nanosec=int(round((i * period % 1) * 1e9)) % 1_000_000_000)) for i, row in enumerate(chunk)]
    return JointTrajectory(header=Header(stamp=to_time(stamp)), joint_names=list(names), points=points)


def msg_to_chunk(msg: JointTrajectory, names: list[str]) -> tuple[float, np.ndarray, np.ndarray]:
    """(observation stamp, offsets in s, (k, n) positions)."""
    if list(msg.joint_names) != list(names):
        raise NsmError(f"action_chunk has joints {list(msg.joint_names)}, expected {list(names)}")
    offsets = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points])
    positions = np.array([p.positions for p in msg.points], dtype=float).reshape(len(msg.points), len(names))
    return from_time(msg.header.stamp), offsets, positions


def battery_to_msg(voltage: float, current: float, percentage: float, stamp: float, simulated: bool) -> BatteryState:
    """A reading as BatteryState: NaN stays NaN (the message's "unmeasured"); a real supply's
    status is UNKNOWN (the servos measure voltage, not whether a pack charges), the
    simulated pack's is DISCHARGING."""
    status = BatteryState.POWER_SUPPLY_STATUS_DISCHARGING if simulated else BatteryState.POWER_SUPPLY_STATUS_UNKNOWN
    return BatteryState(header=Header(stamp=to_time(stamp)), voltage=voltage, current=-current, percentage=percentage,
                        charge=math.nan, capacity=math.nan, design_capacity=math.nan, temperature=math.nan,
                        power_supply_status=status, present=True)


def battery_from_msg(msg: BatteryState) -> tuple[float, float, float]:
    """(voltage V, current drawn A, percentage 0..1) of a BatteryState; NaN where unmeasured."""
    return msg.voltage, -msg.current, msg.percentage


def pose_to_msg(qpos: np.ndarray, stamp: float, frame_id: str = "world") -> PoseStamped:
    """A MuJoCo free joint (x, y, z, qw, qx, qy, qz) as a PoseStamped."""
    x, y, z, qw, qx, qy, qz = (float(v) for v in qpos)
    return PoseStamped(header=Header(stamp=to_time(stamp), frame_id=frame_id),
                       pose=Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)))


def msg_to_pose(msg: PoseStamped) -> np.ndarray:
    """A PoseStamped as a MuJoCo free joint (x, y, z, qw, qx, qy, qz)."""
    p, q = msg.pose.position, msg.pose.orientation
    return np.array([p.x, p.y, p.z, q.w, q.x, q.y, q.z])


def diagnostics_msg(name: str, values: dict, stamp: float, level: int = 0, message: str = "ok") -> DiagnosticArray:
    status = DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id="nsm",
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
    return DiagnosticArray(header=Header(stamp=to_time(stamp)), status=[status])
