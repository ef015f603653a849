"""`nsm dataset to-bag`: episodes as rosbag2 MCAP bags with standard messages, and back.

HDF5 -> bag -> HDF5 gives the same frames (lossless with raw images, within JPEG's error
with the default CompressedImage) and the same action chunks; bag -> HDF5 -> bag gives the
same messages, read by both independent readers (rosbags and mcap). Bad input is one error
and leaves no bag behind."""
import subprocess
import sys

import h5py
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rosbags.highlevel import AnyReader
from typer.testing import CliRunner

from helpers import synthetic_episode
from nsm.cli import app
from nsm.recording.bag_convert import bag_to_hdf5
from nsm.recording.episodes import read_chunks

FRAMES = 45
CAMERAS = ["front", "wrist"]  # synthetic_episode's
PER_FRAME = ["observations/qpos", "observations/qvel", "action"]


def read_bag(bag):
    """{topic: [(log time, message)]} by rosbags and by mcap, in log-time order."""
    by_rosbags, by_mcap = {}, {}
    with AnyReader([bag]) as reader:
        for connection, stamp, raw in reader.messages():
            by_rosbags.setdefault(connection.topic, []).append((stamp, reader.deserialize(raw, connection.msgtype)))
    with open(next(bag.glob("*.mcap")), "rb") as f:
        for _, channel, message, decoded in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages(
                log_time_order=True):
            by_mcap.setdefault(channel.topic, []).append((message.log_time, decoded))
    return by_rosbags, by_mcap


@pytest.mark.parametrize("images", ["raw", "jpeg"])
def test_hdf5_to_bag_to_hdf5_keeps_every_frame_and_chunk(contract, tmp_path, images):
    original = synthetic_episode(tmp_path / "in" / "episode_0.hdf5", contract, FRAMES)
    result = CliRunner().invoke(app, ["dataset", "to-bag", str(original), "--out", str(tmp_path / "bags"),
                                      "--bag-images", images])
    assert result.exit_code == 0, result.output
    bag = tmp_path / "bags" / "episode_0"
    by_rosbags, by_mcap = read_bag(bag)
    suffix = "image_raw" if images == "raw" else "image_raw/compressed"
    expected = {"/nsm/joint_states": FRAMES, "/nsm/joint_commands": FRAMES, "/nsm/action_chunk": 3,
                **{f"/nsm/camera/{cam}/{suffix}": FRAMES for cam in CAMERAS},
                "/nsm/robot_description": 1, "/tf_static": 1, "/tf": FRAMES}  # RViz draws the arm from the bag
    assert {t: len(m) for t, m in by_rosbags.items()} == {t: len(m) for t, m in by_mcap.items()} == expected

    back = bag_to_hdf5(bag, tmp_path / "back" / "episode_0.hdf5")
    assert back.frames == FRAMES and back.skipped_ticks == 0
    with h5py.File(original) as a, h5py.File(back.path) as b:
        for name in PER_FRAME:
            assert np.array_equal(a[name][:], b[name][:]), name
        assert np.allclose(a["timestamp"][:], b["timestamp"][:], atol=1e-6)
        for cam in CAMERAS:
            ours, theirs = a[f"observations/images/{cam}"][:], b[f"observations/images/{cam}"][:]
            if images == "raw":
                assert np.array_equal(ours, theirs)
            else:
                assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 3  # JPEG, quality 90
        assert b.attrs["success"] and b.attrs["policy"] == "test-policy"
        for x, y in zip(read_chunks(a), read_chunks(b), strict=True):
            assert np.array_equal(x.actions, y.actions)
            assert abs(x.observed - y.observed) < 1e-6 and abs(x.arrived - y.arrived) < 1e-6


def test_a_late_first_tick_keeps_every_frame(contract, tmp_path):
    """A loop's first tick often runs late (imports, first render): the episode then spans a
    few ms less than its control slots, and resampling must still give one frame per slot."""
    original = synthetic_episode(tmp_path / "in" / "episode_0.hdf5", contract, FRAMES)
    with h5py.File(original, "r+") as f:
        f["timestamp"][0] += 0.008  # a quarter period late; the rest on time
    result = CliRunner().invoke(app, ["dataset", "to-bag", str(original), "--out", str(tmp_path / "bags")])
    assert result.exit_code == 0, result.output
    back = bag_to_hdf5(tmp_path / "bags" / "episode_0", tmp_path / "back" / "episode_0.hdf5")
    assert back.frames == FRAMES and back.skipped_ticks == 0
    with h5py.File(original) as a, h5py.File(back.path) as b:
        assert np.array_equal(a["action"][:], b["action"][:])  # each slot took its own frame


def test_bag_to_hdf5_to_bag_gives_the_same_messages(contract, tmp_path):
    recorded = synthetic_episode(tmp_path / "in" / "episode_0.hdf5", contract, FRAMES)
    assert CliRunner().invoke(app, ["dataset", "to-bag", str(recorded), "--out", str(tmp_path / "bags"),
                                    "--bag-images", "raw"]).exit_code == 0
    first = tmp_path / "bags" / "episode_0"
    episode = bag_to_hdf5(first, tmp_path / "hdf5" / "episode_0.hdf5").path
    result = CliRunner().invoke(app, ["dataset", "to-bag", str(tmp_path / "hdf5"), "--out", str(tmp_path / "again"),
                                      "--bag-images", "raw"])
    assert result.exit_code == 0, result.output
    assert episode.exists()
    a_rosbags, a_mcap = read_bag(first)
    b_rosbags, b_mcap = read_bag(tmp_path / "again" / "episode_0")
    for a, b in ((a_rosbags, b_rosbags), (a_mcap, b_mcap), (a_rosbags, b_mcap)):
        assert set(a) == set(b)
        for topic in a:
            assert len(a[topic]) == len(b[topic]), topic
            a0, b0 = a[topic][0][0], b[topic][0][0]
            for (ta, ma), (tb, mb) in zip(a[topic], b[topic], strict=True):
                assert abs((ta - a0) - (tb - b0)) < 1000, topic  # the same times, from another start
                if topic.endswith("action_chunk"):
                    assert np.array_equal([p.positions for p in ma.points], [p.positions for p in mb.points])
                elif topic.endswith("image_raw"):
                    assert bytes(ma.data) == bytes(mb.data) and (ma.height, ma.width) == (mb.height, mb.width)
                elif topic.endswith("robot_description"):
                    assert ma.data == mb.data
                elif topic.startswith("/tf"):
                    assert [(t.child_frame_id, t.transform.rotation.w) for t in ma.transforms] == \
                           [(t.child_frame_id, t.transform.rotation.w) for t in mb.transforms]
                else:
                    assert list(ma.name) == list(mb.name) == contract.joint_names
                    assert np.array_equal(ma.position, mb.position) and np.array_equal(ma.velocity, mb.velocity)


def test_a_lerobot_dataset_episode_becomes_a_bag(contract, tmp_path):
    from nsm.recording.lerobot_convert import hdf5_to_lerobot

    recorded = synthetic_episode(tmp_path / "in" / "episode_0.hdf5", contract, FRAMES)
    root = hdf5_to_lerobot([recorded], tmp_path / "ds", "local/tb", "pick", use_videos=False)
    result = CliRunner().invoke(app, ["dataset", "to-bag", str(root), "--out", str(tmp_path / "bags")])
    assert result.exit_code == 0, result.output
    by_rosbags, _ = read_bag(tmp_path / "bags" / "episode_0")
    states = [m for _, m in by_rosbags["/nsm/joint_states"]]
    assert len(states) == len(by_rosbags["/nsm/camera/front/image_raw/compressed"]) == FRAMES
    with h5py.File(recorded) as f:
        expected = f["observations/qpos"][:].astype(np.float32)  # LeRobot stores float32
    assert np.array_equal(np.array([m.position for m in states], np.float32), expected)


def test_bad_input_is_one_error_and_no_bag(contract, tmp_path):
    (tmp_path / "cut").mkdir()
    original = synthetic_episode(tmp_path / "in" / "episode_0.hdf5", contract, FRAMES)
    data = original.read_bytes()
    (tmp_path / "cut" / "episode_0.hdf5").write_bytes(data[: len(data) // 3])
    for source, message in ((tmp_path / "cut", "is not a readable HDF5 episode"),
                            (tmp_path / "nothing", "does not exist")):
        result = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "to-bag", str(source), "--out",
                                 str(tmp_path / "bags")], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bags").exists() or not any((tmp_path / "bags").iterdir())
    CliRunner().invoke(app, ["dataset", "to-bag", str(original), "--out", str(tmp_path / "ok")])
    result = CliRunner().invoke(app, ["dataset", "to-bag", str(original), "--out", str(tmp_path / "ok")])
    assert result.exit_code == 2 and "already exists" in result.output
