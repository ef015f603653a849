"""One typed settings schema per node: the single source of every parameter and its default.

From each model here follow:
- the parameters the node declares, with these defaults (`nsm.ros.node_main.declare`);
- `config/<node>.yaml`, which must hold exactly these values (test_settings.py, by value);
- the launch arguments that set node parameters (`nsm.bringup.ARGUMENTS` takes their
  defaults and descriptions from here);
- `nsm demo`'s options (cli.py builds them from these fields), and `nsm demo --config DIR`
  reads the same YAML files the nodes read.
Every choice (backends, sources, merge modes, compressions, image formats) is validated
here, once, into one error line that names the allowed values.

ROS parameters have no empty-list type: a list default that is empty is declared as `[""]`
and blank entries are dropped when read.
"""
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from nsm.errors import NsmError
from nsm.paths import share_file
from nsm.policy.action_queue import MERGE_MODES

DEFAULT_DB_URL = "sqlite:///runs/telemetry.db"  # the embedded default: every robot-side command and node
POLICY_BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8", "tensorrt")  # nsm.policy.backends implements each
BAG_IMAGE_FORMATS = ("raw", "jpeg")  # nsm.recording.mcap_writer writes each
ROBOT_HELP = "robot contract: config/robots/<robot>.yaml, or a path to one"


class NodeSettings(BaseModel):
    """Base of every node's schema: strict (unknown names are errors), immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    node: ClassVar[str]  # the executable, e.g. "arm_driver_node"

    @classmethod
    def yaml_name(cls) -> str:
        return f"{cls.node.removesuffix('_node')}.yaml"

    @classmethod
    def parse(cls, values: dict[str, Any]) -> Self:
        """Validate parameter values (ROS's, a YAML file's, the CLI's) into settings, or raise
        one NsmError line naming the node, the parameter and what it accepts."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise cls._one_line(exc) from None

    @classmethod
    def ros_defaults(cls) -> dict[str, Any]:
        """The defaults as ROS parameters take them (Paths as strings, an empty list as [""])."""
        return {name: _to_ros(field.default) for name, field in cls.model_fields.items()}

    @classmethod
    def load(cls, folder: Path | None = None, **overrides) -> Self:
        """The node's YAML file from `folder` (default: the installed config/), then `overrides`."""
        path = (folder / cls.yaml_name()) if folder is not None else share_file(f"config/{cls.yaml_name()}")
        if not path.is_file():
            raise NsmError(f"{path} does not exist; a config folder holds {cls.yaml_name()} (copy nsm's config/)")
        try:
            values = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
        except (yaml.YAMLError, KeyError, TypeError):
            raise NsmError(f"{path}: expected `/**: ros__parameters: {{...}}` as in nsm's config/{cls.yaml_name()}") from None
        return cls.parse({**values, **overrides})

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...]:
        annotation = cls.model_fields[name].annotation
        return get_args(annotation) if get_origin(annotation) is Literal else ()

    @classmethod
    def _one_line(cls, exc: ValidationError) -> NsmError:
        error = exc.errors()[0]
        name = ".".join(str(p) for p in error["loc"][:1])
        if error["type"] == "extra_forbidden":
            return NsmError(f"{cls.node}: unknown parameter '{name}'; known: {', '.join(cls.model_fields)}")
        if error["type"] == "literal_error":
            return NsmError(f"{cls.node}: unknown {name} '{error['input']}'; use one of {', '.join(cls.choices(name))}")
        return NsmError(f"{cls.node}: {name}={error['input']!r}: {error['msg']}")


def _to_ros(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_to_ros(v) for v in value] or [""]
    return value


def _drop_blank(values: list[str]) -> list[str]:
    return [v for v in values if str(v).strip()]


NameList = Annotated[list[str], AfterValidator(_drop_blank)]  # [""] from ROS means []


class CameraSettings(NodeSettings):
    node: ClassVar[str] = "camera_node"
    robot: str = Field("so101", description=ROBOT_HELP)
    camera: str = Field("front", description="a camera name of the contract (bringup sets one per node)")
    source: Literal["sim", "opencv", "video"] = Field(
        "sim", description="sim (renders the arm driver's world: joint_states + sim/cube_pose) | opencv | video")
    device: str = Field("0", description="opencv: device index or /dev/videoN")
    path: str = Field("", description="video: file replayed in real time, looping")


class ArmDriverSettings(NodeSettings):
    node: ClassVar[str] = "arm_driver_node"
    robot: str = Field("so101", description=ROBOT_HELP)
    backend: Literal["sim", "so101"] = Field("sim", description="sim (MuJoCo physics) | so101 (the real arm: LeRobot's "
                                                                 "Feetech driver)")
    seed: int = Field(0, description="sim: cube placement")
    port: str = Field("/dev/ttyACM0", description="so101: the arm's serial port (`lerobot-find-port`)")
    calibration: str = Field("", description="so101: LeRobot's calibration JSON for this arm (`lerobot-calibrate`)")
    pack_curve: str = Field("", description="so101: volts:charge points of the arm's pack (\"10.5:0,12.6:1\"); "
                                            "\"\": percentage unknown (NaN)")
    merge: Literal[tuple(MERGE_MODES)] = Field("replace", description="overlapping chunks: replace (newest wins) | ensemble "
                                                               "(ACT, exp(-m*i)) | blend")
    merge_coeff: float = Field(-1.0, description="m for ensemble, new-chunk weight for blend; < 0: the mode's default")
    loop: Literal["thread", "timer"] = Field("thread", description="thread: the control loop's own real-time thread | "
                                                                   "timer: an rclpy timer (benchmark comparison)")
    torque_off_after: float = Field(0.0, ge=0, description="s of stale commands before torque is cut; 0: never (hold "
                                                           "position: an SO-101 without torque falls)")


class PolicySettings(NodeSettings):
    node: ClassVar[str] = "policy_node"
    robot: str = Field("so101", description=ROBOT_HELP)
    model_path: str = Field("", description="LeRobot policy folder; \"\": the scripted `expert`")
    backend: Literal[POLICY_BACKENDS] = Field("onnxruntime", description="torch | onnxruntime | onnxruntime-int8 | "
                                                                         "tensorrt (each needs its `nsm policy export` "
                                                                         "first)")
    expert: Literal["pick_place", "waypoint"] = Field(
        "pick_place", description="without model_path: pick_place (sim only: plans from sim/cube_pose) | waypoint (a "
                                  "fixed joint tour)")
    chunk_size: int = Field(30, ge=1, description="the scripted expert's chunk (a LeRobot policy has its own)")
    threshold: float = Field(0.5, gt=0, le=1, description="request a new chunk when fewer than threshold * chunk_size "
                                                          "remain")
    max_obs_age: float = Field(0.2, gt=0, description="s; older observations are refused")


class RecorderSettings(NodeSettings):
    node: ClassVar[str] = "recorder_node"
    robot: str = Field("so101", description=ROBOT_HELP)
    out: str = Field("runs/episodes", description="episode_<n>.hdf5 files (and episode_<n>/ bags)")
    cameras: NameList = Field(["front", "wrist"], description="cameras recorded, from the contract")
    sim: bool = Field(True, description="episodes are marked simulated (attrs)")
    policy: str = Field("scripted", description="policy name stored with each episode")
    compression: Literal["auto", "none", "lzf"] = Field(
        "auto", description="HDF5 images: auto (lzf for rendered sim images, none for cameras) | none (4.3x real time, "
                            "2 cameras) | lzf (0.9x for 2 USB cameras); bench/results/recording.json")
    bag: bool = Field(True, description="also write a rosbag2 MCAP bag per episode (ros2 bag, Foxglove)")
    bag_images: Literal[BAG_IMAGE_FORMATS] = Field("jpeg", description="bag images: jpeg (CompressedImage, 4% of raw) | "
                                                                   "raw (Image)")

    @property
    def hdf5_compression(self) -> str | None:
        """What the HDF5 writer is given: auto means lzf for rendered images only."""
        choice = ("lzf" if self.sim else "none") if self.compression == "auto" else self.compression
        return None if choice == "none" else choice


class DbBridgeSettings(NodeSettings):
    node: ClassVar[str] = "db_bridge_node"
    db_url: str = Field(DEFAULT_DB_URL, description="telemetry database: sqlite:///..., postgresql://user@host/db, or "
                                                    "the http(s) URL of `nsm serve`")
    robot_id: str = Field("sim01", description="robot_id of every telemetry row")
    spool_dir: str = Field("runs/telemetry-spool", description="rows wait here while the database is unreachable")


class PredictorSettings(NodeSettings):
    node: ClassVar[str] = "predictor_node"
    models: NameList = Field([], description="model folders from `nsm ai train`, e.g. [models/collision-EP01]")
    robot_id: str = Field("sim01", description="robot_id in the hub messages and the predictions table")
    hub_url: str = Field("", description="Socket.IO hub, e.g. http://hub:5000 (\"\" = none); token from NSM_HUB_TOKEN")
    hub_namespace: str = Field("/", description="Socket.IO namespace of the hub")
    db_url: str = Field("", description="store predictions in this database's `predictions` table (\"\" = don't)")


class ViewSettings(NodeSettings):
    node: ClassVar[str] = "view_node"
    robot: str = Field("so101", description=ROBOT_HELP)
    cameras: NameList = Field(["front", "wrist"], description="cameras shown, from the robot contract")
    host: str = Field("127.0.0.1", description="address Rerun's web viewer and stream listen on (0.0.0.0: other "
                                               "machines too)")
    web_port: int = Field(9090, ge=1, le=65535, description="Rerun's web viewer (HTTP)")
    grpc_port: int = Field(9876, ge=1, le=65535, description="the stream the web viewer (or `rerun --connect`) reads")


NODES: dict[str, type[NodeSettings]] = {cls.node: cls for cls in (CameraSettings, ArmDriverSettings, PolicySettings,
                                                                   RecorderSettings, DbBridgeSettings, PredictorSettings,
                                                                   ViewSettings)}


def yaml_text(cls: type[NodeSettings]) -> str:
    """config/<node>.yaml as nsm ships it: every parameter at its default, described."""
    lines = [f"# {cls.node} parameters (nsm.settings.{cls.__name__}: defaults and choices live there).", "/**:",
             "  ros__parameters:"]
    for name, field in cls.model_fields.items():
        value = yaml.safe_dump(_to_ros(field.default), default_flow_style=True, width=1000).strip().removesuffix("...")
        lines.append(f"    {name}: {value.strip()}  # {field.description}")
    return "\n".join(lines) + "\n"
