"""`nsm dataset view`: recorded episodes (HDF5, bag) as Rerun recordings, read back with
Rerun's own .rrd reader: one image per recorded frame and camera, each joint's state and
command on the recorded time axis, every action chunk the recorder kept, and the metadata.
Bad input is one clear error and leaves no recording behind."""
import shutil
import subprocess
import sys
import time
import urllib.request

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import free_port, read_rrd, save_stream, web_view
from nsm.app.demo import Demo
from nsm.app.demo_settings import demo_config
from nsm.cli import app
from nsm.image_codec import encode_jpeg
from nsm.recording.bag_convert import bag_to_hdf5
from nsm.recording.episodes import read_chunks
from nsm.recording.lerobot_convert import hdf5_to_lerobot

SERIES = ("state", "command")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A 2 s expert episode from `nsm demo`, as HDF5 and as a bag."""
    out = tmp_path_factory.mktemp("demo")
    Demo(demo_config(seconds=2.0, out=out, bag=True, db_url=f"sqlite:///{out / 'telemetry.db'}")).run()
    return out


def close_image(a, b) -> bool:
    """Equal within JPEG's error (the viewer's images are JPEG, quality 85)."""
    return a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 3.0


def test_an_hdf5_episode_becomes_a_recording_with_every_frame_and_joint_on_recorded_time(recorded, contract, tmp_path):
    result = CliRunner().invoke(app, ["dataset", "view", str(recorded), "--save", str(tmp_path / "views")])
    assert result.exit_code == 0, result.output
    rrd = tmp_path / "views" / "episode_0.rrd"
    assert f"wrote {rrd}" in " ".join(result.output.split())
    assert sorted(p.name for p in (tmp_path / "views").iterdir()) == ["episode_0.rrd"]  # the HDF5 episode, once

    recording, entities, text, images = read_rrd(rrd)
    with h5py.File(recorded / "episode_0.hdf5") as f:
        frames, times, chunks = int(f.attrs["frames"]), f["timestamp"][:], read_chunks(f)
        success, first = str(f.attrs["success"]), {c: f[f"observations/images/{c}"][0] for c in ("front", "wrist")}
    assert recording == "episode_0" and frames >= 50
    for camera in ("front", "wrist"):  # the demo's cameras
        assert np.allclose(entities[f"/cameras/{camera}"], times, atol=1e-6)  # one image per frame, at its time
        assert close_image(images[f"/cameras/{camera}"], first[camera]) and first[camera].std() > 5
    for joint in contract.joint_names:
        for series in SERIES:
            assert np.allclose(entities[f"/joints/{joint}/{series}"], times, atol=1e-6)
    # the expert's chunks, each a predicted trajectory from its observation on, and their latency
    assert len(chunks) >= 3
    for k, chunk in enumerate(chunks):
        expected = chunk.observed + np.arange(len(chunk.actions)) / contract.fps
        assert np.allclose(entities[f"/joints/gripper/chunks/{k}"], expected, atol=1e-6)
    assert f"/joints/gripper/chunks/{len(chunks)}" not in entities
    assert np.allclose(entities["/policy/latency_ms"], [c.arrived for c in chunks], atol=1e-6)
    assert all(0 <= c.arrived - c.observed < 0.5 for c in chunks)
    assert f"| success | {success} |" in text and f"| frames | {frames} |" in text and "| policy |" in text


def test_a_bag_becomes_the_same_recording_at_its_messages_stamps(recorded, contract, tmp_path):
    bag = recorded / "episode_0"
    rrd = tmp_path / "bag.rrd"
    result = CliRunner().invoke(app, ["dataset", "view", str(bag), "--save", str(rrd)])
    assert result.exit_code == 0, result.output
    _, from_bag, text, bag_images = read_rrd(rrd)
    _, from_hdf5, _, hdf5_images = read_rrd(_hdf5_view(recorded, tmp_path))
    assert set(from_bag) == set(from_hdf5)
    assert all(close_image(bag_images[c], hdf5_images[c]) for c in hdf5_images)  # JPEG twice: the bag's, the view's
    for entity, times in from_hdf5.items():  # the bag's stamps are the episode's times (relative to the first state)
        assert np.allclose(from_bag[entity], times - from_hdf5["/joints/gripper/state"][0], atol=1e-6), entity
    assert "| frames |" in text and "| success |" in text


def _hdf5_view(recorded, tmp_path):
    rrd = tmp_path / "hdf5.rrd"
    assert CliRunner().invoke(app, ["dataset", "view", str(recorded), "--episode", "0", "--save", str(rrd)]).exit_code == 0
    return rrd


def test_a_lerobot_dataset_episode_becomes_a_recording_on_the_dataset_s_timestamps(recorded, tmp_path):
    root = hdf5_to_lerobot([recorded / "episode_0.hdf5"], tmp_path / "dataset", "local/view", "pick", use_videos=False)
    rrd = tmp_path / "lerobot.rrd"
    result = CliRunner().invoke(app, ["dataset", "view", str(root), "--save", str(rrd)])
    assert result.exit_code == 0, result.output
    recording, entities, text, images = read_rrd(rrd)
    with h5py.File(recorded / "episode_0.hdf5") as f:
        frames, first = int(f.attrs["frames"]), f["observations/images/wrist"][0]
    expected = np.arange(frames) / 30.0  # LeRobot's timestamps: frame index / fps
    assert recording == "episode_0" and np.allclose(entities["/cameras/wrist"], expected, atol=1e-4)
    assert np.allclose(entities["/joints/shoulder_pan/state"], expected, atol=1e-4)
    assert close_image(images["/cameras/wrist"], first)  # decoded by LeRobot, the recorded frame
    assert "| tasks | pick |" in text


def test_from_bag_carries_the_action_chunks_into_the_episode(recorded, tmp_path):
    converted = bag_to_hdf5(recorded / "episode_0", tmp_path / "episode_0.hdf5").path
    with h5py.File(recorded / "episode_0.hdf5") as f:
        original, t0 = read_chunks(f), float(f["timestamp"][0])
    with h5py.File(converted) as f:
        back = read_chunks(f)
    assert len(back) == len(original) >= 3
    for a, b in zip(original, back, strict=True):
        assert np.array_equal(a.actions, b.actions)
        assert abs((a.observed - t0) - b.observed) < 1e-6 and abs((a.arrived - t0) - b.arrived) < 1e-6


def not_hdf5(folder):
    (folder / "notes.txt").write_text("hello")
    return folder / "notes.txt"


@pytest.mark.parametrize("make, message", [
    (not_hdf5, "is not a readable HDF5 episode"),
    (lambda folder: folder, "holds no episodes"),
    (lambda folder: folder / "missing", "does not exist"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, make, message):
    (tmp_path / "in").mkdir()
    source, save = make(tmp_path / "in"), tmp_path / "views"
    result = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "view", str(source), "--save", str(save)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not save.exists() or not any(save.iterdir())


def test_a_truncated_episode_is_refused_and_leaves_no_half_recording(recorded, tmp_path):
    data = (recorded / "episode_0.hdf5").read_bytes()
    folder = tmp_path / "cut"
    folder.mkdir()
    shutil.copy2(recorded / "episode_0.hdf5", folder / "episode_0.hdf5")
    (folder / "episode_1.hdf5").write_bytes(data[: len(data) // 2])  # a copy cut off half way
    save = tmp_path / "views"
    result = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "view", str(folder), "--save", str(save)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "episode_1.hdf5 is not a readable HDF5 episode" in result.stderr, result.stderr
    assert sorted(p.name for p in save.iterdir()) == ["episode_0.rrd"]  # the good one complete, no .partial


def test_a_camera_short_of_frames_and_a_bag_without_joint_states_are_refused(recorded, tmp_path):
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    damaged = tmp_path / "damaged" / "episode_0.hdf5"
    damaged.parent.mkdir()
    shutil.copy2(recorded / "episode_0.hdf5", damaged)
    with h5py.File(damaged, "r+") as f:
        f["observations/images/wrist"].resize(10, axis=0)  # a camera's frames lost
    bag = tmp_path / "cameras_only"
    ts = get_typestore(Stores.ROS2_JAZZY)
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:  # a bag of images, no joints
        connection = writer.add_connection("/nsm/camera/wrist/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                                           typestore=ts)
        t = ts.types
        msg = t["sensor_msgs/msg/CompressedImage"](header=t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id=""), format="jpeg",
            data=encode_jpeg(np.zeros((24, 32, 3), np.uint8)))
        writer.write(connection, 10**9, ts.serialize_cdr(msg, "sensor_msgs/msg/CompressedImage"))
    shutil.copy2(recorded / "episode_0" / "robot_contract.yaml", bag / "robot_contract.yaml")
    for source, message in ((damaged, "camera wrist has 10 of the"), (bag, "has no */joint_states topic")):
        save = tmp_path / f"views-{source.name}"
        result = CliRunner().invoke(app, ["dataset", "view", str(source), "--save", str(save)])
        assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output
        assert not save.exists() or not any(save.iterdir())  # nothing written half


def test_several_episodes_need_a_folder_or_one_episode(recorded, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for k in range(2):
        shutil.copy2(recorded / "episode_0.hdf5", folder / f"episode_{k}.hdf5")
    result = CliRunner().invoke(app, ["dataset", "view", str(folder), "--save", str(tmp_path / "x.rrd")])
    assert result.exit_code == 2 and "--save takes a folder" in result.output
    result = CliRunner().invoke(app, ["dataset", "view", str(folder), "--episode", "7", "--save", str(tmp_path / "x.rrd")])
    assert result.exit_code == 2 and "has no episode_7" in result.output
    assert not (tmp_path / "x.rrd").exists()


def test_web_serves_rerun_s_viewer_on_localhost_until_stopped(recorded):
    """The page only: that the viewer shows the episode is for a browser to check
    (test_view_browser.py). Stopping the command stops the viewer it started."""
    with web_view(recorded) as (url, web, grpc):
        assert url == f"http://127.0.0.1:{web}/?url=rerun%2Bhttp://127.0.0.1:{grpc}/proxy"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=5) as page:
                    assert page.status == 200 and "Rerun" in page.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline, "the web viewer did not answer within 60 s"
                time.sleep(0.5)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=5)


def test_demo_view_streams_every_tick_and_chunk_live(tmp_path):
    """`nsm demo --view`: the run streamed to Rerun's server as it happens; what the server
    holds, saved by Rerun's own client, has each joint's state and command for every tick,
    camera images, and every chunk; the view dropped nothing and the loop waited for nothing."""
    web, grpc = free_port(), free_port()
    out = tmp_path / "live"
    demo = Demo(demo_config(seconds=2.0, out=out, db_url=f"sqlite:///{out / 'telemetry.db'}", view=True, view_port=web,
                            view_grpc_port=grpc))
    saved = tmp_path / "live.rrd"
    try:
        summary = demo.run()
        save_stream(grpc, saved)
    finally:
        demo.close()
    assert summary.view_url == f"http://127.0.0.1:{web}/?url=rerun%2Bhttp://127.0.0.1:{grpc}/proxy"
    assert summary.view_dropped == 0 and summary.dropped_frames == 0
    recording, entities, _, images = read_rrd(saved)
    assert recording == "live"
    with h5py.File(out / "episode_0.hdf5") as f:
        ticks, chunks = int(f.attrs["frames"]), len(read_chunks(f))
    for joint in ("shoulder_pan", "gripper"):
        for series in SERIES:
            assert len(entities[f"/joints/{joint}/{series}"]) == ticks  # every tick the loop ran
    assert chunks >= 3 and f"/joints/gripper/chunks/{chunks - 1}" in entities
    assert f"/joints/gripper/chunks/{chunks}" not in entities and len(entities["/policy/latency_ms"]) == chunks
    assert len(entities["/cameras/wrist"]) >= 10 and images["/cameras/wrist"].std() > 5  # ~10 images a second
