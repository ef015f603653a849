"""The one episode reader: how HDF5 episodes are named, ordered and read back.

`episode_<n>.hdf5` (`.partial` while recording or after a crash) with n counting from 0, in
numeric order (episode_10 after episode_2, as the ACT repository and LeRobot's ALOHA
converter read a folder). A closed episode's length is its `frames` attribute (datasets may
be allocated further); an older file without it uses the action's length.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from nsm.errors import NsmError

NAME = re.compile(r"^episode_(\d+)\.hdf5(\.partial)?$")


def episode_index(path: Path) -> int:
    match = NAME.match(path.name)
    if match is None:
        raise NsmError(f"{path.name} is not named episode_<n>.hdf5")
    return int(match.group(1))


def episode_files(folder: Path, partial: bool = False) -> list[Path]:
    """The closed episodes in `folder` (and the partial ones, if asked), in numeric order."""
    found = [p for p in folder.glob("episode_*.hdf5*") if (m := NAME.match(p.name)) and (partial or not m.group(2))]
    return sorted(found, key=lambda p: (episode_index(p), p.name))


def next_episode_path(folder: Path) -> Path:
    """episode_<n>.hdf5 with n one past the highest index already in `folder` (partial ones count)."""
    taken = [episode_index(p) for p in episode_files(folder, partial=True)]
    return folder / f"episode_{max(taken, default=-1) + 1}.hdf5"


def frame_count(f: h5py.File) -> int:
    return int(f.attrs.get("frames", f["action"].shape[0]))


@dataclass(frozen=True)
class EpisodeInfo:
    path: Path
    frames: int
    seconds: float
    cameras: list[str]
    policy: str
    success: str  # "True" / "False" / "" (unknown)
    sha256: str


def episode_info(path: Path) -> EpisodeInfo:
    with h5py.File(path) as f:
        frames = frame_count(f)
        return EpisodeInfo(path, frames, float(f["timestamp"][frames - 1]) if frames else 0.0,
                           sorted(f["observations/images"]), str(f.attrs.get("policy", "")),
                           str(f.attrs.get("success", "")), str(f.attrs.get("sha256", "")))


def sampled_observations(path: Path, count: int) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """`count` frames spread evenly over a closed episode: (joint positions, {camera: HxWx3 uint8})."""
    with h5py.File(path) as f:
        frames = frame_count(f)
        picks = np.unique(np.linspace(0, frames - 1, min(count, frames)).round().astype(int)) if frames else []
        images = f["observations/images"]
        return [(f["observations/qpos"][i], {cam: images[cam][i] for cam in images}) for i in picks]
