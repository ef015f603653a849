"""The arm's link poses for a bag, from its URDF: what robot_state_publisher publishes on
`/tf` and `/tf_static` while the robot runs, so that a bag played with `ros2 bag play` moves
the model in RViz, and Foxglove draws it, with nothing else running (robot_state_publisher
is not on PyPI, and a bag converted from HDF5 never had it beside it).

Each URDF joint gives its child link's pose in its parent's frame: the joint's origin
(xyz, then roll-pitch-yaw about the fixed x, y, z axes) and, for a revolute or continuous
joint, a rotation by the joint's position about its axis. Quaternions are (x, y, z, w) as
geometry_msgs writes them.
"""
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from nsm.contract import RobotContract
from nsm.errors import NsmError

MOVING = ("revolute", "continuous")


@dataclass(frozen=True)
class Transform:
    parent: str
    child: str
    translation: np.ndarray  # (3,) m
    rotation: np.ndarray  # (4,) x, y, z, w


@dataclass(frozen=True)
class _Joint:
    name: str
    parent: str
    child: str
    xyz: np.ndarray
    rotation: np.ndarray  # the origin's
    axis: np.ndarray | None  # None: fixed


def robot_description(contract: RobotContract) -> str | None:
    """The URDF nsm ships for `contract`'s robot (the SO-101's), or None for a robot it has none of."""
    if contract.robot != "so101":
        return None
    from nsm.sim.scene import urdf_xml

    return urdf_xml()


class RobotTf:
    """`fixed()` once (/tf_static) and `moving(position)` a frame (/tf), for the joints of `joint_names`."""

    def __init__(self, urdf: str, joint_names: list[str]):
        try:
            root = ET.fromstring(urdf)
        except ET.ParseError as exc:
            raise NsmError(f"the robot's URDF does not parse: {exc}") from None
        self._joints = [_parse_joint(j) for j in root.findall("joint")]  # not the transmissions' joints
        moving = {j.name: j for j in self._joints if j.axis is not None}
        missing = [n for n in joint_names if n not in moving]
        if missing:
            raise NsmError(f"the robot's URDF has no moving joint {', '.join(missing)}; it describes another robot")
        self._moving = [moving[n] for n in joint_names]

    def fixed(self) -> list[Transform]:
        return [Transform(j.parent, j.child, j.xyz, j.rotation) for j in self._joints if j.axis is None]

    def moving(self, position: np.ndarray) -> list[Transform]:
        """Each moving joint's child pose at `position` (one value per joint, in `joint_names` order)."""
        return [Transform(j.parent, j.child, j.xyz, _multiply(j.rotation, _about(j.axis, float(q))))
                for j, q in zip(self._moving, position, strict=True)]


def _parse_joint(element: ET.Element) -> _Joint:
    origin = element.find("origin")
    xyz = _floats(origin.get("xyz") if origin is not None else None)
    roll, pitch, yaw = _floats(origin.get("rpy") if origin is not None else None)
    rotation = _multiply(_about(np.array([0.0, 0, 1]), yaw),
                         _multiply(_about(np.array([0.0, 1, 0]), pitch), _about(np.array([1.0, 0, 0]), roll)))
    axis = None
    if element.get("type") in MOVING:
        found = element.find("axis")
        axis = _floats(found.get("xyz") if found is not None else "1 0 0")  # URDF's default axis
        axis = axis / np.linalg.norm(axis)
    return _Joint(element.get("name"), element.find("parent").get("link"), element.find("child").get("link"), xyz,
                  rotation, axis)


def _floats(text: str | None) -> np.ndarray:
    return np.array([float(v) for v in text.split()]) if text else np.zeros(3)


def _about(axis: np.ndarray, angle: float) -> np.ndarray:
    """The rotation by `angle` about the unit `axis`, as a quaternion (x, y, z, w)."""
    return np.append(axis * np.sin(angle / 2), np.cos(angle / 2))


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b: rotate by b, then by a."""
    (ax, ay, az, aw), (bx, by, bz, bw) = a, b
    return np.array([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz])
