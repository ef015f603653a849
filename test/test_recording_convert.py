"""HDF5 episodes -> LeRobotDataset v3 with LeRobot's own API, loaded back offline."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from nsm.app.demo import Demo
from nsm.app.demo_settings import demo_config
from nsm.errors import NsmError
from nsm.recording.lerobot_convert import hdf5_to_lerobot


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    out = tmp_path_factory.mktemp("episodes")
    cfg = demo_config(seconds=1.0, episodes=2, out=out, camera=["wrist"], db_url=f"sqlite:///{out / 't.db'}")
    return Demo(cfg).run().episodes


def test_cli_converts_to_a_dataset_lerobot_loads(recorded, tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    root = tmp_path / "ds"
    done = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "convert", str(recorded[0].parent), "--out",
                           str(root), "--repo-id", "local/sim", "--task", "wave", "--no-videos",
                           "--image-size", "native"],  # the cameras' own size (default: the cpu recipe's 96x128)
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    dataset = LeRobotDataset("local/sim", root=root)
    assert dataset.num_episodes == 2 and len(dataset) == 60 and dataset.fps == 30
    with h5py.File(recorded[1]) as f:
        qpos, action, image = f["observations/qpos"][7], f["action"][7], f["observations/images/wrist"][7]
    sample = dataset[30 + 7]  # frame 7 of the second episode
    assert int(sample["episode_index"]) == 1 and sample["task"] == "wave"
    assert np.allclose(sample["observation.state"].numpy(), qpos, atol=1e-6)
    assert np.allclose(sample["action"].numpy(), action, atol=1e-6)
    # LeRobot hands images out as float CHW in [0, 1]; PNG frames are lossless
    assert np.array_equal((sample["observation.images.wrist"].numpy() * 255).round().astype(np.uint8).transpose(1, 2, 0), image)


def test_videos_and_mismatched_episodes(recorded, tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    policy = os.sched_getscheduler(0)
    hdf5_to_lerobot(recorded[:1], tmp_path / "video", "local/video", "wave", use_videos=True)
    # as root the video encoder left its caller real-time, inherited by every node launched after
    assert os.sched_getscheduler(0) == policy
    frame = LeRobotDataset("local/video", root=tmp_path / "video")[3]
    assert frame["observation.images.wrist"].shape == (3, 240, 320)
    other = Demo(demo_config(seconds=0.5, out=tmp_path / "front", camera=["front"],
                                    db_url=f"sqlite:///{tmp_path / 't.db'}")).run().episodes[0]
    with pytest.raises(NsmError, match="does not match episode_0.hdf5 .*cameras"):
        hdf5_to_lerobot([recorded[0], other], tmp_path / "mixed", "local/mixed", "wave")
    with pytest.raises(NsmError, match="already exists"):
        hdf5_to_lerobot(recorded, tmp_path / "video", "local/video", "wave")
