"""What `ros2 launch nsm bringup.launch.py` starts, as plain data.

The launch file turns `plan(...)` into launch_ros Nodes; the system test starts the same
plan as processes (each node's console script with the same parameter files and
overrides). One source, so the test cannot drift from what a robot runs. ROS-free: the
launch file imports it from the installed package.
"""
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nsm.errors import NsmError
from nsm.paths import share_file
from nsm.settings import (
    NODES,
    ArmDriverSettings,
    DbBridgeSettings,
    NodeSettings,
    PolicySettings,
    PredictorSettings,
    RecorderSettings,
)

# executable -> its parameter file in config/ (the static launch test checks both)
NODE_PARAMS = {node: schema.yaml_name() for node, schema in NODES.items()}
# lifecycle (managed) nodes: bringup drives each through configure -> activate
MANAGED = ("arm_driver_node", "policy_node", "recorder_node")


def _from_schema(schema: type[NodeSettings], name: str, doc: str | None = None) -> tuple[str, str]:
    """A launch argument that sets a node parameter: its default and description are the schema's."""
    field = schema.model_fields[name]
    default = field.default
    text = ",".join(default) if isinstance(default, list) else str(default).lower() if isinstance(default, bool) else str(default)
    return text, doc or field.description


# launch argument -> (default, description); those that set a node parameter come from nsm.settings
ARGUMENTS = {
    "namespace": ("/nsm", "namespace of every topic of this robot"),
    "sim": ("true", "true: MuJoCo arm and rendered cameras; false: the real SO-101 and USB cameras"),
    "cameras": _from_schema(RecorderSettings, "cameras", "comma-separated camera names from the robot contract"),
    "devices": ("/dev/video0,/dev/video2", "sim:=false: V4L2 device per camera, in the order of `cameras`"),
    "port": _from_schema(ArmDriverSettings, "port"),
    "calibration": _from_schema(ArmDriverSettings, "calibration"),
    "model_path": _from_schema(PolicySettings, "model_path", "LeRobot policy folder; empty: the scripted expert (sim: "
                                                             "pick and place; real arm: a joint tour)"),
    "backend": _from_schema(PolicySettings, "backend"),
    "models": _from_schema(PredictorSettings, "models", "telemetry model folders for predictor_node, comma-separated "
                                                        "(empty: no predictor)"),
    "hub_url": _from_schema(PredictorSettings, "hub_url"),
    "record": ("true", "start the recorder (episodes on recorder/start_episode, HDF5 + MCAP)"),
    "seed": _from_schema(ArmDriverSettings, "seed"),
    "db_url": _from_schema(DbBridgeSettings, "db_url"),
    "robot_id": _from_schema(DbBridgeSettings, "robot_id"),
    "use_rviz": ("false", "start RViz with config/nsm.rviz"),
    "view": ("false", "start view_node: the robot live in Rerun's web viewer (http://127.0.0.1:9090)"),
}


@dataclass(frozen=True)
class NodeLaunch:
    executable: str
    name: str
    overrides: dict = field(default_factory=dict)  # on top of config/<NODE_PARAMS[executable]>

    @property
    def params_file(self) -> str:
        return NODE_PARAMS[self.executable]

    @property
    def managed(self) -> bool:
        return self.executable in MANAGED

    def command(self, namespace: str, folder: Path) -> list[str]:
        """The process launch_ros starts for this node: its console script, the parameter file,
        then the overrides as a second parameter file (written to `folder`)."""
        overrides = folder / f"{self.name}.overrides.yaml"
        overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": self.overrides}}))
        script = shutil.which(self.executable, path=str(Path(sys.executable).parent)) or self.executable
        return [script, "--ros-args", "-r", f"__ns:={namespace}", "-r", f"__node:={self.name}",
                "--params-file", str(share_file(f"config/{self.params_file}")), "--params-file", str(overrides)]


def _flag(name: str, value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise NsmError(f"launch argument {name}:={value} must be true or false")
    return value.lower() == "true"


def plan(**args: str) -> list[NodeLaunch]:
    """The nsm nodes for these launch arguments (strings, as launch gives them; missing ones default)."""
    unknown = set(args) - set(ARGUMENTS)
    if unknown:
        raise NsmError(f"unknown launch arguments {sorted(unknown)}; known: {', '.join(ARGUMENTS)}")
    a = {name: default for name, (default, _) in ARGUMENTS.items()} | args
    sim, record = _flag("sim", a["sim"]), _flag("record", a["record"])
    cameras = [c.strip() for c in a["cameras"].split(",") if c.strip()]
    devices = [d.strip() for d in a["devices"].split(",") if d.strip()]
    if not sim and len(devices) < len(cameras):
        raise NsmError(f"sim:=false needs a device per camera: cameras:={a['cameras']} devices:={a['devices']}")
    seed = int(a["seed"])
    nodes = [NodeLaunch("camera_node", f"camera_{cam}",
                        {"camera": cam, "source": "sim"} if sim else
                        {"camera": cam, "source": "opencv", "device": devices[i]})
             for i, cam in enumerate(cameras)]
    nodes.append(NodeLaunch("arm_driver_node", "arm_driver_node", {"backend": "sim", "seed": seed} if sim else
                            {"backend": "so101", "port": a["port"], "calibration": a["calibration"]}))
    nodes.append(NodeLaunch("policy_node", "policy_node", {"model_path": a["model_path"], "backend": a["backend"],
                                                           "expert": "pick_place" if sim else "waypoint"}))
    if record:
        nodes.append(NodeLaunch("recorder_node", "recorder_node", {"cameras": cameras, "sim": sim}))
    nodes.append(NodeLaunch("db_bridge_node", "db_bridge_node", {"db_url": a["db_url"], "robot_id": a["robot_id"]}))
    if _flag("view", a["view"]):
        nodes.append(NodeLaunch("view_node", "view_node", {"cameras": cameras}))
    models = [m.strip() for m in a["models"].split(",") if m.strip()]
    if models:
        nodes.append(NodeLaunch("predictor_node", "predictor_node",
                                {"models": models, "robot_id": a["robot_id"], "hub_url": a["hub_url"]}))
    return nodes
