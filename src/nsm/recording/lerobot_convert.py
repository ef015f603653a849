"""HDF5 episodes -> a LeRobotDataset (v3), written with LeRobot's own dataset API; and a
LeRobotDataset's episode read back as EpisodeStreams for the viewers.

The result loads offline with `LeRobotDataset(repo_id, root=...)` and trains with LeRobot's
scripts: `observation.state` = qpos, `action` = the command sent, one
`observation.images.<cam>` per camera (MP4 video, or PNG frames with `use_videos=False`).
Every episode must come from the same robot contract (joints, cameras, image sizes, fps):
a mismatch is an error before anything is written.
"""
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.policy.image_input import ImageInput, to_model_size
from nsm.policy.model_dir import ACTION_KEY as ACTION
from nsm.policy.model_dir import IMAGE_PREFIX as IMAGES
from nsm.policy.model_dir import STATE_KEY as STATE
from nsm.recording.episodes import EpisodeStreams, frame_count
from nsm.scheduling import scheduling_kept


def _layout(path: Path) -> dict:
    with h5py.File(path) as f:
        return {"fps": float(f.attrs["fps"]), "robot": str(f.attrs["robot"]),
                "joints": [str(j) for j in f.attrs["joint_names"]],
                "cameras": {cam: tuple(f[f"observations/images/{cam}"].shape[1:]) for cam in f["observations/images"]}}


def _quiet_encoders() -> None:
    """Our progress bar is the one to watch: silence the SVT-AV1 banner (inherited by LeRobot's
    encoder processes) and the datasets library's own bars; errors still print."""
    import datasets

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
    datasets.disable_progress_bars()


def hdf5_to_lerobot(episodes: list[Path], root: Path, repo_id: str, task: str, use_videos: bool = True,
                    on_frame: Callable[[], None] | None = None, image_size: tuple[int, int] | None = None) -> Path:
    """Convert `episodes` (episode_<n>.hdf5 files) into a new LeRobotDataset at `root`;
    `image_size` (height, width): store every camera at that size (nsm.policy.image_input)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    _quiet_encoders()
    if not episodes:
        raise NsmError("no episode_<n>.hdf5 files to convert")
    if root.exists():
        raise NsmError(f"{root} already exists; choose a new folder for the dataset")
    layout = _layout(episodes[0])
    for path in episodes[1:]:
        other = _layout(path)
        if other != layout:
            diff = ", ".join(f"{k}: {layout[k]} vs {other[k]}" for k in layout if layout[k] != other[k])
            raise NsmError(f"{path.name} does not match {episodes[0].name} ({diff}); convert them separately")
    n = len(layout["joints"])
    features = {STATE: {"dtype": "float32", "shape": (n,), "names": layout["joints"]},
                ACTION: {"dtype": "float32", "shape": (n,), "names": layout["joints"]}}
    stored = {cam: (*image_size, 3) if image_size else shape for cam, shape in layout["cameras"].items()}
    for cam, shape in stored.items():
        features[f"{IMAGES}{cam}"] = {"dtype": "video" if use_videos else "image", "shape": shape,
                                                 "names": ["height", "width", "channels"]}
    # run as root, the video encoding under LeRobotDataset leaves its caller SCHED_FIFO
    with scheduling_kept():
        dataset = LeRobotDataset.create(repo_id, fps=int(round(layout["fps"])), features=features, root=root,
                                        robot_type=layout["robot"], use_videos=use_videos)
        _add_episodes(dataset, episodes, stored, task, on_frame)
        dataset.finalize()
    if image_size:
        ImageInput({cam: shape[:2] for cam, shape in layout["cameras"].items()}, tuple(image_size)).write(root / "meta")
    return root


def _add_episodes(dataset, episodes: list[Path], stored: dict, task: str, on_frame) -> None:
    for path in episodes:
        with h5py.File(path) as f:
            frames = frame_count(f)
            qpos, action = f["observations/qpos"][:frames].astype(np.float32), f["action"][:frames].astype(np.float32)
            for t in range(frames):
                frame = {STATE: qpos[t], ACTION: action[t], "task": task}
                for cam, shape in stored.items():
                    frame[f"{IMAGES}{cam}"] = to_model_size(f[f"observations/images/{cam}"][t], shape[:2])
                dataset.add_frame(frame)
                if on_frame is not None:
                    on_frame()
        dataset.save_episode()


def is_lerobot_dataset(path: Path) -> bool:
    return (path / "meta" / "info.json").is_file()


def lerobot_episode_count(root: Path) -> int:
    import json

    return int(json.loads((root / "meta" / "info.json").read_text())["total_episodes"])


class _DecodedFrames(Sequence):
    """One camera of a LeRobotDataset episode, decoded by LeRobot frame by frame, as (H, W, 3) uint8."""

    def __init__(self, dataset, key: str):
        self._dataset, self._key = dataset, key

    def __len__(self) -> int:
        return len(self._dataset)

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self._dataset):
            raise IndexError(i)
        chw = self._dataset[i][self._key].numpy()  # float in [0, 1], channels first
        return (chw.transpose(1, 2, 0) * 255.0).round().clip(0, 255).astype(np.uint8)


def lerobot_episode_streams(root: Path, episode: int, repo_id: str = "local/nsm") -> EpisodeStreams:
    """Episode `episode` of the LeRobotDataset at `root`: observation.state as the state, action
    as the command, each observation.images.<cam> decoded by LeRobot, on the dataset's timestamps."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(repo_id, root=root, episodes=[episode])
    table = dataset.hf_dataset.with_format("numpy")
    times = np.asarray(table["timestamp"], float)
    state = dataset.meta.features[STATE]
    names = state.get("names") or [f"joint_{j}" for j in range(state["shape"][0])]
    cameras = {key.removeprefix(IMAGES): (times, _DecodedFrames(dataset, key)) for key in dataset.meta.camera_keys}
    meta = {"robot": str(dataset.meta.robot_type), "fps": str(dataset.fps), "frames": str(len(times)),
            "dataset": str(root), "tasks": ", ".join(dataset.meta.episodes[episode]["tasks"])}
    try:
        contract = load_contract(str(dataset.meta.robot_type))
    except NsmError:
        contract = None  # a robot nsm has no contract for: viewable, not convertible to a bag
    return EpisodeStreams(f"episode_{episode}", [str(n) for n in names],
                          {"state": (times, np.stack(table[STATE])), "command": (times, np.stack(table[ACTION]))},
                          cameras, meta, period=1.0 / dataset.fps, contract=contract)
