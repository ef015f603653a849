"""`nsm demo` end to end: simulated arm, rendered cameras, HDF5 episode, SQLite telemetry."""
import json
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from sqlalchemy import create_engine, text

from helpers import first_frames_match_their_worlds
from nsm.app.demo import Demo
from nsm.app.demo_settings import demo_config


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    summary = Demo(demo_config(seconds=2.0, out=out, db_url=f"sqlite:///{out / 'telemetry.db'}")).run()
    return out, summary


def test_episode_file_has_the_aloha_layout(demo_run, contract):
    out, summary = demo_run
    assert [p.name for p in summary.episodes] == ["episode_0.hdf5"]
    assert not list(out.glob("*.partial"))
    n, steps = len(contract.joints), 60
    with h5py.File(summary.episodes[0]) as f:
        assert f["observations/qpos"].shape == (steps, n)
        assert f["observations/qvel"].shape == (steps, n)
        assert f["action"].shape == (steps, n)
        assert f["timestamp"].shape == (steps,)
        for cam in contract.cameras:
            images = f[f"observations/images/{cam.name}"]
            assert images.shape == (steps, cam.height, cam.width, 3) and images.dtype == np.uint8
            assert images.chunks == (1, cam.height, cam.width, 3)
            assert images[-1].std() > 5  # a rendered scene, not a blank frame
        assert list(f.attrs["joint_names"]) == contract.joint_names
        assert f.attrs["fps"] == 30 and f.attrs["sim"] and f.attrs["robot"] == "so101"
        assert f.attrs["policy"] == "scripted-pick-place-expert"
        assert not f.attrs["success"]  # 2 s is too short to carry the cube to the goal
        assert np.all(np.diff(f["timestamp"][:]) > 0)
        qpos, action = f["observations/qpos"][:], f["action"][:]
    # the arm followed the policy: it moved, and stayed within the contract's limits
    assert np.ptp(qpos, axis=0).max() > 0.3
    assert np.all(action >= contract.lower) and np.all(action <= contract.upper)


def test_each_episode_starts_with_its_own_worlds_frames(tmp_path, monkeypatch):
    """The cameras outlive an episode; the first observation after a reset must not be the
    previous world's last frame (the policy would plan its first chunk from it; `nsm eval`
    did, found in its recorded episodes). A camera whose frame is ready 0.2 s after its
    capture (software GL on a busy machine) makes the race certain."""
    from nsm.camera.sim import SimCamera

    class LaggingCamera(SimCamera):
        def _capture(self):
            image = super()._capture()
            time.sleep(0.2)
            return image

    monkeypatch.setattr("nsm.app.demo.ProcessSimCamera", LaggingCamera)
    out = tmp_path / "two"
    Demo(demo_config(episodes=2, seconds=0.5, seed=7, out=out, db_url=f"sqlite:///{out / 'telemetry.db'}")).run()
    firsts = first_frames_match_their_worlds([out / "episode_0.hdf5", out / "episode_1.hdf5"], 7)
    assert np.abs(firsts[0].astype(int) - firsts[1].astype(int)).mean() > 0.2  # two different worlds


def test_summary_reports_the_loop_and_cameras(demo_run):
    _, s = demo_run
    assert s.frames == 60 and s.dropped_frames == 0 and s.rejected_commands == 0
    assert len(s.period_ms) == 59 and 30 < s.percentile(50) < 37
    assert s.chunks >= 2 and set(s.camera_fps) == {"front", "wrist"} and min(s.camera_fps.values()) > 0


def test_telemetry_lands_in_sqlite(demo_run):
    out, s = demo_run
    engine = create_engine(f"sqlite:///{out / 'telemetry.db'}")
    with engine.connect() as conn:
        counts = dict(conn.execute(text("SELECT data_type, count(*) FROM robot_telemetry GROUP BY data_type")).all())
        battery = conn.execute(text("SELECT payload ->> 'value' FROM robot_telemetry WHERE data_type = 'battery' ORDER BY "
                                    "seq")).scalars().all()
    assert counts == {"joint_states": 60, "joint_commands": 60, "loop_timing": 60, "battery": 2, "episode": 1}
    assert s.telemetry.written == 183 and s.telemetry.spooled == 0
    assert 0 < float(battery[-1]) < float(battery[0]) <= 100  # the battery drains
    with engine.connect() as conn:
        episode = conn.execute(text("SELECT path, frames, duration_s, policy, success FROM episodes")).one()
    assert episode.path == str(s.episodes[0].resolve()) and episode.frames == 60
    assert episode.duration_s == pytest.approx(2.0, abs=0.05) and episode.policy == "scripted-pick-place-expert"
    assert episode.success == 0 and s.successes == [False]  # SQLite stores booleans as 0/1
    with engine.connect() as conn:  # the fleet's dashboard counts episodes from the telemetry (nsm serve)
        logged = json.loads(conn.execute(text("SELECT payload FROM robot_telemetry WHERE data_type = 'episode'")).scalar())
    assert logged == {"path": episode.path, "success": False, "frames": 60, "duration_s": episode.duration_s,
                      "policy": episode.policy}


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "nsm.cli", "demo", "--seconds", "0.5", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--camera", "nonexistent"], "unknown camera 'nonexistent': robot so101 has cameras front, wrist"),
        (["--out", "/dev/null/sub"], "cannot write to output folder /dev/null/sub"),
        (["--db-url", "postgresql://nsm@127.0.0.1:1/nsm"], "cannot reach database postgresql://nsm@127.0.0.1:1/nsm"),
        (["--db-url", "mysql://x@y/z"], "only sqlite:// and postgresql:// are supported"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, args, message):
    result = run_cli("--out", str(tmp_path / "o"), *args, cwd=tmp_path) if "--out" not in args else run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not list(tmp_path.rglob("*.hdf5*"))  # nothing started


def test_cli_demo_prints_the_summary(tmp_path):
    result = run_cli("--out", str(tmp_path / "o"), "--camera", "wrist", "--bag", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for needle in ("episodes", "control period", "p99", "camera fps", "wrist", "episode_0.hdf5", "sqlite:///"):
        assert needle in result.stdout
    with h5py.File(tmp_path / "o" / "episode_0.hdf5") as f:
        assert list(f["observations/images"]) == ["wrist"]
        frames = f.attrs["frames"]
        # control slots the episode spanned: `frames`, plus any a late tick skipped
        slots = int(round((f["timestamp"][-1] - f["timestamp"][0]) * f.attrs["fps"])) + 1
    assert slots >= frames
    bag = tmp_path / "o" / "episode_0"  # the same episode as a rosbag2 MCAP bag
    assert (bag / "metadata.yaml").is_file() and (bag / "episode_0.mcap").is_file()
    assert "rosbag2 (MCAP)" in result.stdout and not list((tmp_path / "o").glob("*.partial"))
    from rosbags.rosbag2 import Reader

    with Reader(bag) as reader:
        assert {c.topic: c.msgcount for c in reader.connections}["/nsm/joint_commands"] == frames
    back = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "from-bag", str(bag), "--out", str(tmp_path / "b")],
                          capture_output=True, text=True, timeout=120)
    assert back.returncode == 0, back.stderr
    with h5py.File(tmp_path / "b" / "episode_0.hdf5") as f:  # the bag resampled back into an episode
        assert f.attrs["frames"] == slots  # one frame per slot: a skipped slot takes its nearest frame
