"""HDF5 episodes -> a LeRobotDataset (v3), written with LeRobot's own dataset API.

The result loads offline with `LeRobotDataset(repo_id, root=...)` and trains with LeRobot's
scripts: `observation.state` = qpos, `action` = the command sent, one
`observation.images.<cam>` per camera (MP4 video, or PNG frames with `use_videos=False`).
Every episode must come from the same robot contract (joints, cameras, image sizes, fps):
a mismatch is an error before anything is written.
"""
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from nsm.errors import NsmError
from nsm.policy.image_input import ImageInput, to_model_size
from nsm.recording.episodes import frame_count


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
    features = {"observation.state": {"dtype": "float32", "shape": (n,), "names": layout["joints"]},
                "action": {"dtype": "float32", "shape": (n,), "names": layout["joints"]}}
    stored = {cam: (*image_size, 3) if image_size else shape for cam, shape in layout["cameras"].items()}
    for cam, shape in stored.items():
        features[f"observation.images.{cam}"] = {"dtype": "video" if use_videos else "image", "shape": shape,
                                                 "names": ["height", "width", "channels"]}
    dataset = LeRobotDataset.create(repo_id, fps=int(round(layout["fps"])), features=features, root=root,
                                    robot_type=layout["robot"], use_videos=use_videos)
    for path in episodes:
        with h5py.File(path) as f:
            frames = frame_count(f)
            qpos, action = f["observations/qpos"][:frames].astype(np.float32), f["action"][:frames].astype(np.float32)
            for t in range(frames):
                frame = {"observation.state": qpos[t], "action": action[t], "task": task}
                for cam, shape in stored.items():
                    frame[f"observation.images.{cam}"] = to_model_size(f[f"observations/images/{cam}"][t], shape[:2])
                dataset.add_frame(frame)
                if on_frame is not None:
                    on_frame()
        dataset.save_episode()
    dataset.finalize()
    if image_size:
        ImageInput({cam: shape[:2] for cam, shape in layout["cameras"].items()}, tuple(image_size)).write(root / "meta")
    return root
