"""What `nsm demo` (and collect, eval) can be told: the node settings the one-process robot
shares with the ROS nodes (same schema, same defaults, same YAML files), plus what only a
demo has. Light to import: the CLI builds `nsm demo`'s options from it at start-up."""
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nsm.errors import NsmError
from nsm.settings import ArmDriverSettings, DbBridgeSettings, PolicySettings, RecorderSettings


class DemoConfig(BaseModel):
    """Everything `nsm demo` can be told: the node settings the one-process robot shares with
    the ROS nodes (nsm.settings: same defaults, same YAML files), plus what only a demo has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arm: ArmDriverSettings = ArmDriverSettings()
    policy: PolicySettings = PolicySettings()
    recorder: RecorderSettings = RecorderSettings()
    telemetry: DbBridgeSettings = DbBridgeSettings()
    episodes: int = Field(1, ge=1, description="how many episodes to run and record")
    seconds: float = Field(10.0, gt=0, description="length of each episode in seconds of robot time")
    bag_zstd: bool = Field(False, description="zstd-compress the bag's MCAP chunks")
    render: Literal["process", "thread"] = Field("process", description="sim cameras render in their own processes, "
                                                                        "or on threads of this one")
    view: bool = Field(False, description="stream the run live to Rerun's web viewer on localhost (the URL is printed; "
                                          "it stays up after the run until Ctrl-C)")
    view_port: int = Field(9090, ge=1, le=65535, description="the live view's web viewer port (HTTP)")
    view_grpc_port: int = Field(9876, ge=1, le=65535, description="the port the web viewer streams the run from")


# `nsm demo` option -> (section of DemoConfig, its field): the CLI builds these options from the schema
NODE_OPTIONS: dict[str, tuple[str, str]] = {
    "robot": ("arm", "robot"),  # every section's robot
    "camera": ("recorder", "cameras"),
    "out": ("recorder", "out"),
    "seed": ("arm", "seed"),
    "policy": ("policy", "model_path"),
    "backend": ("policy", "backend"),
    "expert": ("policy", "expert"),
    "chunk_size": ("policy", "chunk_size"),
    "threshold": ("policy", "threshold"),
    "merge": ("arm", "merge"),
    "merge_coeff": ("arm", "merge_coeff"),
    "bag": ("recorder", "bag"),
    "bag_images": ("recorder", "bag_images"),
    "hdf5_compression": ("recorder", "compression"),
    "db_url": ("telemetry", "db_url"),
    "robot_id": ("telemetry", "robot_id"),
}
SECTIONS = {"arm": ArmDriverSettings, "policy": PolicySettings, "recorder": RecorderSettings,
            "telemetry": DbBridgeSettings}


def demo_config(config_dir: Path | None = None, **options) -> DemoConfig:
    """The demo's settings: each node's YAML file from `config_dir` (None: the schema's
    defaults), then `options` (NODE_OPTIONS names, or DemoConfig's own fields) on top."""
    given = {section: {} for section in SECTIONS}
    for option, value in list(options.items()):
        if option in NODE_OPTIONS:
            section, name = NODE_OPTIONS[option]
            value = [str(v) for v in value] if isinstance(value, list) else str(value) if isinstance(value, Path) else value
            targets = [s for s, cls in SECTIONS.items() if "robot" in cls.model_fields] if option == "robot" else [section]
            for target in targets:
                given[target][name] = value
            del options[option]
    sections = {section: cls.load(config_dir, **given[section]) if config_dir is not None else cls.parse(given[section])
                for section, cls in SECTIONS.items()}
    try:
        return DemoConfig(**sections, **options)
    except ValidationError as exc:
        e = exc.errors()[0]
        raise NsmError(f"demo: {'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}") from None
