"""`nsm sim collect`: expert episodes through the real pipeline, converted to a LeRobotDataset."""
import subprocess
import sys

import h5py
import pytest

from nsm.app.collect import Collector
from nsm.errors import NsmError


def test_collect_records_successful_episodes_as_a_lerobot_dataset(tmp_path, contract):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    result = Collector(1, tmp_path / "run", seed=3, videos=False).run()
    assert result.summary.successes == [True] and result.kept == result.summary.episodes
    with h5py.File(result.kept[0]) as f:
        assert f.attrs["success"] and f.attrs["policy"] == "scripted-pick-place-expert" and f.attrs["frames"] == 300
    dataset = LeRobotDataset("local/nsm_sim_pick_place", root=result.dataset)
    assert dataset.num_episodes == 1 and dataset.num_frames == 300 and dataset.fps == contract.fps
    item = dataset[150]
    for cam in contract.cameras:
        assert tuple(item[f"observation.images.{cam.name}"].shape) == (3, cam.height, cam.width)
    assert item["task"] == "pick up the cube and put it on the green goal"


def test_collect_refuses_an_existing_dataset_before_anything_moves(tmp_path):
    (tmp_path / "lerobot").mkdir()
    with pytest.raises(NsmError, match="already exists"):
        Collector(1, tmp_path)
    assert not (tmp_path / "episodes").exists()


def test_cli_help_teaches_the_command():
    out = subprocess.run([sys.executable, "-m", "nsm.cli", "sim", "collect", "--help"], capture_output=True,
                         text=True, timeout=60).stdout
    assert "LeRobotDataset" in out and "--episodes" in out
