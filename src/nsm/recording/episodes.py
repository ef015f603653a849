"""The one episode reader: how HDF5 episodes are named, ordered and read back.

`episode_<n>.hdf5` (`.partial` while recording or after a crash) with n counting from 0, in
numeric order (episode_10 after episode_2, as the ACT repository and LeRobot's ALOHA
converter read a folder). A closed episode's length is its `frames` attribute (datasets may
be allocated further); an older file without it uses the action's length.
"""
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from nsm.contract import RobotContract, contract_from_yaml
from nsm.errors import NsmError
from nsm.recording.background import ChunkRecord

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


@dataclass
class EpisodeStreams:
    """An episode as timed streams, whatever it was recorded in (HDF5 episode, bag): what the
    viewers read. Times are seconds since the episode started, as recorded (each stream at
    its own stamps in a bag; the control ticks in HDF5)."""

    name: str
    joint_names: list[str]
    joints: dict[str, tuple[np.ndarray, np.ndarray]]  # "state", "command", "velocity" -> (times (T,), values (T, joints))
    cameras: dict[str, tuple[np.ndarray, Sequence[np.ndarray]]]  # camera -> (times (T,), frames (H, W, 3) RGB)
    meta: dict[str, str] = field(default_factory=dict)  # robot, fps, policy, success, ... as text
    chunks: list[ChunkRecord] = field(default_factory=list)  # the action chunks, where recorded
    period: float = 1 / 30  # seconds between a chunk's actions (the control period)
    contract: RobotContract | None = None  # the robot it was recorded on, where the recording says


class _Frames(Sequence):
    """The first `n` frames of an HDF5 image dataset, read one at a time (an episode's images
    need not fit in memory)."""

    def __init__(self, dataset: h5py.Dataset, n: int):
        self._dataset, self._n = dataset, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> np.ndarray:
        if not -self._n <= i < self._n:
            raise IndexError(i)
        return self._dataset[i % self._n]


@contextmanager
def open_episode(path: Path) -> Iterator[EpisodeStreams]:
    """A closed HDF5 episode as EpisodeStreams (images read lazily while the context is open);
    one clear error for a file that is not one."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NsmError(f"{path} is not a readable HDF5 episode ({exc}); a recording that was cut off "
                       "is repaired with `nsm dataset recover`") from None
    with f:
        missing = [name for name in ("observations/qpos", "action", "timestamp", "observations/images") if name not in f]
        if missing:
            raise NsmError(f"{path} is not an nsm/ACT episode: no {', '.join(missing)}")
        n = frame_count(f)
        if f["timestamp"].shape[0] < n or f["observations/qpos"].shape[0] < n or f["action"].shape[0] < n:
            raise NsmError(f"{path} is truncated: {n} frames announced, fewer stored")
        for cam in f["observations/images"]:
            if f[f"observations/images/{cam}"].shape[0] < n:
                raise NsmError(f"{path}: camera {cam} has {f[f'observations/images/{cam}'].shape[0]} of the {n} frames "
                               "announced; the file is damaged")
        t = f["timestamp"][:n]
        names = [str(j) for j in f.attrs.get("joint_names", [f"joint_{i}" for i in range(f["action"].shape[1])])]
        meta = {key: str(f.attrs[key]) for key in ("robot", "fps", "policy", "success", "sim", "frames",
                                                   "dropped_frames", "sha256") if key in f.attrs}
        joints = {"state": (t, f["observations/qpos"][:n]), "command": (t, f["action"][:n])}
        if "observations/qvel" in f:
            joints["velocity"] = (t, f["observations/qvel"][:n])
        contract = contract_from_yaml(str(f.attrs["contract"]), str(path)) if "contract" in f.attrs else None
        yield EpisodeStreams(path.name.removesuffix(".hdf5"), names, joints,
                             {cam: (t, _Frames(f[f"observations/images/{cam}"], n)) for cam in sorted(f["observations/images"])},
                             meta, read_chunks(f), 1.0 / float(f.attrs.get("fps", 30)), contract)


def read_chunks(f: h5py.File) -> list[ChunkRecord]:
    """The action chunks an episode recorded (none in files from before chunks were recorded)."""
    if "chunks" not in f:
        return []
    lengths = f["chunks/length"][:]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    actions = f["chunks/actions"][: starts[-1]]
    return [ChunkRecord(actions[starts[k]: starts[k + 1]], float(observed), float(arrived))
            for k, (observed, arrived) in enumerate(zip(f["chunks/observed"][:], f["chunks/arrived"][:], strict=True))]
