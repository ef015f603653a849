"""The robot contract: the single mapping between a robot and everything learned.

`config/robots/<robot>.yaml` names the joints (order matters), their units and limits,
the cameras and the control rate. The sim, the drivers, the policy runtime, the recorder
and the converters all read it, and a copy is stored with every episode, so a mismatch
is an error at load time instead of a silent reorder of joints.
"""
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nsm.errors import NsmError
from nsm.paths import share_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JointSpec(_Strict):
    name: str
    unit: str = "rad"
    lower: float
    upper: float
    max_step: float = Field(gt=0, description="largest command change per control step")

    @model_validator(mode="after")
    def _ordered(self):
        if not self.lower < self.upper:
            raise ValueError(f"joint {self.name}: lower {self.lower} must be below upper {self.upper}")
        return self


class CameraSpec(_Strict):
    name: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float = Field(gt=0)


class RobotContract(_Strict):
    robot: str
    fps: float = Field(gt=0, description="control rate, Hz")
    joints: tuple[JointSpec, ...]
    cameras: tuple[CameraSpec, ...]
    home: tuple[float, ...] = Field(description="safe resting pose, one value per joint")

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.home) != len(self.joints):
            raise ValueError(f"home has {len(self.home)} values for {len(self.joints)} joints")
        return self

    @property
    def joint_names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def lower(self) -> np.ndarray:
        return np.array([j.lower for j in self.joints])

    @property
    def upper(self) -> np.ndarray:
        return np.array([j.upper for j in self.joints])

    @property
    def max_step(self) -> np.ndarray:
        return np.array([j.max_step for j in self.joints])

    @property
    def period(self) -> float:
        return 1.0 / self.fps

    def camera(self, name: str) -> CameraSpec:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        known = ", ".join(c.name for c in self.cameras)
        raise NsmError(f"unknown camera '{name}': robot {self.robot} has cameras {known} (pick one of those)")

    def to_yaml(self) -> str:
        """The contract as stored beside recorded data."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


@dataclass(frozen=True)
class Observation:
    """What the robot observed at one control step, in the contract's terms: what every policy
    (learned or scripted) is given."""

    step: int  # control step the observation was taken at
    stamp: float  # time of the joint reading (time.monotonic() in-process; ROS time in the nodes)
    state: np.ndarray  # joint positions, contract order
    images: dict[str, np.ndarray] = field(default_factory=dict)  # camera name -> (H, W, 3) uint8


def load_contract(robot: str | Path = "so101") -> RobotContract:
    """Load a contract by robot name (config/robots/<name>.yaml) or by file path."""
    path = Path(robot)
    if path.suffix not in (".yaml", ".yml"):
        path = share_file(f"config/robots/{robot}.yaml")
    if not path.exists():
        raise NsmError(f"robot contract {path} does not exist (give a robot name or a .yaml path)")
    return contract_from_yaml(path.read_text(), str(path))


def contract_from_yaml(text: str, where: str = "robot contract") -> RobotContract:
    """A contract from its YAML text (as stored beside recorded data); `where` names it in errors."""
    try:
        return RobotContract.model_validate(yaml.safe_load(text))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise NsmError(f"robot contract {where}: {field}: {first['msg']}") from None
