"""Episodes as rosbag2 bags with MCAP storage (metadata.yaml + .mcap), standard ROS 2 messages.

    /<ns>/joint_states              sensor_msgs/msg/JointState   observation.state (qpos, qvel)
    /<ns>/joint_commands            sensor_msgs/msg/JointState   action (the command sent)
    /<ns>/camera/<cam>/image_raw    sensor_msgs/msg/Image (rgb8), or with `image_format="jpeg"`
    /<ns>/camera/<cam>/image_raw/compressed  sensor_msgs/msg/CompressedImage (image_transport's name)
    /<ns>/action_chunk              trajectory_msgs/msg/JointTrajectory, as policy_node publishes it:
                                    stamped with its observation's time, point i at i control periods,
                                    logged when it arrived
    /<ns>/robot_description         std_msgs/msg/String, the URDF, once (latched)
    /tf_static, /tf                 tf2_msgs/msg/TFMessage: the links' poses from the URDF and
                                    joint_states (nsm.recording.robot_tf), as robot_state_publisher
                                    publishes them — RViz and Foxglove draw the arm from the bag alone

`compression="zstd"` compresses the MCAP chunks (rosbag2's "storage" compression).

Written with `rosbags` (pure Python; rosbag2_py is not on PyPI), so `ros2 bag info/play`,
Foxglove and the `mcap` reader open the bag. The bag is written inside
`episode_<n>.partial/` and moved out by `close()`; beside the bag files it holds `robot_contract.yaml` and
`episode.yaml` (frames, outcome).
"""
import shutil
from pathlib import Path

import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from nsm import image_codec
from nsm.contract import RobotContract
from nsm.errors import NsmError
from nsm.recording.background import BackgroundEpisodeWriter, ChunkRecord, EpisodeFrame
from nsm.recording.robot_tf import RobotTf, Transform, robot_description
from nsm.settings import BAG_IMAGE_FORMATS

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
STRING = "std_msgs/msg/String"
TF = "tf2_msgs/msg/TFMessage"
COMPRESSIONS = (None, "zstd")
_NEVER = QosTime(2147483647, 4294967295)  # rosbag2's "infinite" duration
# what robot_state_publisher offers on robot_description and /tf_static: `ros2 bag play` offers it again, so a
# subscriber that joins late (RViz) still gets the one message
LATCHED = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, _NEVER, _NEVER,
              QosLiveliness.AUTOMATIC, _NEVER, False)


class McapEpisodeWriter(BackgroundEpisodeWriter):
    def __init__(self, path: Path, contract: RobotContract, cameras: list[str], *, start_ns: int,
                 namespace: str = "/nsm", policy: str = "", queue_size: int = 256, image_format: str = "jpeg",
                 compression: str | None = None):
        super().__init__(queue_size)
        if image_format not in BAG_IMAGE_FORMATS:
            raise NsmError(f"unknown image format '{image_format}'; use one of {', '.join(BAG_IMAGE_FORMATS)}")
        if compression not in COMPRESSIONS:
            raise NsmError(f"unknown bag compression '{compression}'; use one of {', '.join(map(str, COMPRESSIONS))}")
        self._jpeg = image_format == "jpeg"
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial") / self.path.name  # the .mcap keeps the final name
        self._contract, self._names, self._start_ns, self._policy = contract, contract.joint_names, start_ns, policy
        self._ts = get_typestore(Stores.ROS2_JAZZY)
        self._types = self._ts.types
        ns = namespace.rstrip("/")
        try:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            self._writer = Writer(self.partial, version=9, storage_plugin=StoragePlugin.MCAP)
            if compression == "zstd":
                self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
            self._writer.open()
        except (OSError, Exception) as exc:
            raise NsmError(f"cannot write the bag {self.partial}: {exc}; choose a writable output folder") from None
        add = self._writer.add_connection
        self._state = add(f"{ns}/joint_states", JOINT_STATE, typestore=self._ts)
        self._command = add(f"{ns}/joint_commands", JOINT_STATE, typestore=self._ts)
        self._chunk = add(f"{ns}/action_chunk", TRAJECTORY, typestore=self._ts)
        if self._jpeg:
            self._images = {cam: add(f"{ns}/camera/{cam}/image_raw/compressed", COMPRESSED, typestore=self._ts)
                            for cam in cameras}
        else:
            self._images = {cam: add(f"{ns}/camera/{cam}/image_raw", IMAGE, typestore=self._ts) for cam in cameras}
        description = robot_description(contract)
        self._tf = RobotTf(description, self._names) if description else None
        if self._tf is not None:  # written before the writer's thread starts
            types = self._types
            self._writer.write(add(f"{ns}/robot_description", STRING, typestore=self._ts, offered_qos_profiles=[LATCHED]),
                               start_ns, self._ts.serialize_cdr(types[STRING](data=description), STRING))
            self._writer.write(add("/tf_static", TF, typestore=self._ts, offered_qos_profiles=[LATCHED]),
                               start_ns, self._tf_message(start_ns, self._tf.fixed()))
            self._tf_moving = add("/tf", TF, typestore=self._ts)
        self._start()

    def _header(self, stamp_ns: int, frame_id: str = ""):
        t = self._types
        time = t["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        return t["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def _joint_state(self, stamp_ns: int, position, velocity=None):
        empty = np.zeros(0)
        return self._types[JOINT_STATE](
            header=self._header(stamp_ns), name=list(self._names), position=np.asarray(position, np.float64),
            velocity=empty if velocity is None else np.asarray(velocity, np.float64), effort=empty)

    def _append(self, frame: EpisodeFrame) -> None:
        stamp = self._start_ns + int(round(frame.timestamp * 1e9))
        write, serialize = self._writer.write, self._ts.serialize_cdr
        write(self._state, stamp, serialize(self._joint_state(stamp, frame.qpos, frame.qvel), JOINT_STATE))
        write(self._command, stamp, serialize(self._joint_state(stamp, frame.action), JOINT_STATE))
        if self._tf is not None:
            write(self._tf_moving, stamp, self._tf_message(stamp, self._tf.moving(frame.qpos)))
        for cam, connection in self._images.items():
            image, header = frame.images[cam], self._header(stamp, f"{cam}_camera")
            if self._jpeg:  # as image_transport compresses: nsm.image_codec
                msg = self._types[COMPRESSED](header=header, format=image_codec.FORMAT,
                                              data=image_codec.encode_jpeg(image))
                write(connection, stamp, serialize(msg, COMPRESSED))
                continue
            h, w, _ = image.shape
            msg = self._types[IMAGE](header=header, height=h, width=w, encoding="rgb8",
                                     is_bigendian=0, step=w * 3, data=np.ascontiguousarray(image).reshape(-1))
            write(connection, stamp, serialize(msg, IMAGE))

    def _tf_message(self, stamp_ns: int, transforms: list[Transform]) -> bytes:
        t = self._types
        msg = t[TF](transforms=[t["geometry_msgs/msg/TransformStamped"](
            header=self._header(stamp_ns, tf.parent), child_frame_id=tf.child,
            transform=t["geometry_msgs/msg/Transform"](
                translation=t["geometry_msgs/msg/Vector3"](*map(float, tf.translation)),
                rotation=t["geometry_msgs/msg/Quaternion"](*map(float, tf.rotation)))) for tf in transforms])
        return self._ts.serialize_cdr(msg, TF)

    def _append_chunk(self, chunk: ChunkRecord) -> None:
        t, period = self._types, 1.0 / self._contract.fps
        points = []
        for i, row in enumerate(np.asarray(chunk.actions, np.float64)):
            offset = int(round(i * period * 1e9))
            points.append(t["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=row, velocities=np.zeros(0), accelerations=np.zeros(0), effort=np.zeros(0),
                time_from_start=t["builtin_interfaces/msg/Duration"](sec=offset // 1_000_000_000,
                                                                      nanosec=offset % 1_000_000_000)))
        observed, arrived = (self._start_ns + int(round(s * 1e9)) for s in (chunk.observed, chunk.arrived))
        msg = t[TRAJECTORY](header=self._header(observed), joint_names=list(self._names), points=points)
        self._writer.write(self._chunk, arrived, self._ts.serialize_cdr(msg, TRAJECTORY))

    def _discard(self) -> None:
        try:
            self._writer.close()
        finally:
            shutil.rmtree(self.partial.parent, ignore_errors=True)

    def _finish(self, success: bool | None) -> Path:
        self._writer.close()
        if self.error is not None:
            raise self._failed(self.partial) from self.error
        (self.partial / "robot_contract.yaml").write_text(self._contract.to_yaml())
        (self.partial / "episode.yaml").write_text(yaml.safe_dump(
            {"frames": self.frames, "dropped_frames": self.dropped, "success": success, "policy": self._policy,
             "fps": self._contract.fps, "robot": self._contract.robot}, sort_keys=False))
        self.partial.rename(self.path)
        self.partial.parent.rmdir()
        return self.path
