"""`nsm dataset play`: an episode published on the robot's topics over DDS, recorded again by
recorder_node in another process; the recorded episode equals the played one (frames,
images, timing, action chunks)."""
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
from std_srvs.srv import Trigger

from helpers import free_port, read_rrd, save_stream, synthetic_episode
from nsm.bringup import NodeLaunch
from nsm.recording.episodes import read_chunks
from nsm.ros.graph import Graph

pytestmark = pytest.mark.ros
NS = "/nsmplay"


def test_play_into_the_recorder_records_the_played_episode(ros_env, contract, tmp_path):
    played = synthetic_episode(tmp_path / "in" / "episode_0.hdf5", contract, frames=60)
    recorder = NodeLaunch("recorder_node", "recorder_node", {"cameras": ["front", "wrist"], "sim": True})
    with Graph([recorder], NS, tmp_path / "graph", client="play_test_client") as g:
        g.transition("recorder_node", "configure", "activate")
        started = g.call("recorder/start_episode", Trigger)
        assert started.success, started.message
        result = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "play", str(played), "--namespace", NS],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "playing episode_0" in result.stdout, result.stderr
        stopped = g.call("recorder/stop_episode", Trigger)
        assert stopped.success, stopped.message
    recorded = tmp_path / "graph" / "runs" / "episodes" / "episode_0.hdf5"
    repeated = dict(re.findall(r"(\w+) (\d+)", stopped.message.split("frames repeated: ")[1]))
    with h5py.File(played) as a, h5py.File(recorded) as b:
        assert b.attrs["frames"] == a.attrs["frames"] == 60
        for name in ("observations/qpos", "observations/qvel", "action"):
            assert np.array_equal(a[name][:], b[name][:]), name
        for camera in ("front", "wrist"):
            # camera topics are best effort: under load a frame can be lost, and its tick then
            # records the tick before's frame — every differing image is such a repeat, counted
            want, got = a[f"observations/images/{camera}"][:], b[f"observations/images/{camera}"][:]
            differ = [i for i in range(60) if not np.array_equal(want[i], got[i])]
            assert all(i > 0 and np.array_equal(got[i], got[i - 1]) for i in differ), (camera, differ)
            assert len(differ) == int(repeated[camera]) <= 3, (camera, differ, stopped.message)
        # the same pace: each frame as far from the first as when it was recorded
        ta, tb = a["timestamp"][:], b["timestamp"][:]
        assert np.allclose(tb - tb[0], ta - ta[0], atol=1e-6)
        chunks_a, chunks_b = read_chunks(a), read_chunks(b)
    assert len(chunks_b) == len(chunks_a) == 3
    for x, y in zip(chunks_a, chunks_b, strict=True):
        assert np.allclose(x.actions, y.actions) and abs((x.observed - ta[0]) - (y.observed - tb[0])) < 1e-6


def test_play_refuses_bad_input_in_one_line(ros_env, tmp_path):
    for args, message in (([str(tmp_path / "missing")], "does not exist"),
                          ([str(tmp_path), "--rate", "0"], "--rate must be above 0")):
        result = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "play", *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_view_node_streams_the_robot_s_topics_to_rerun(ros_env, contract, tmp_path):
    """view_node (bringup's view:=true) on a played episode: Rerun's server holds each joint's
    state and command for every message, camera images and the chunks."""
    played = synthetic_episode(tmp_path / "in" / "episode_0.hdf5", contract, frames=60)
    web, grpc = free_port(), free_port()
    node = NodeLaunch("view_node", "view_node", {"web_port": web, "grpc_port": grpc})
    with Graph([node], NS, tmp_path / "graph", client="view_test_client") as g:
        g.spin_until(lambda: g.node.count_subscribers(f"{NS}/joint_commands") > 0, 60, "view_node's subscriptions")
        result = subprocess.run([sys.executable, "-m", "nsm.cli", "dataset", "play", str(played), "--namespace", NS],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        g.spin_for(1.0)  # the view sends what gathered every 0.1 s
        save_stream(grpc, tmp_path / "live.rrd")
    log = (tmp_path / "graph" / "view_node.log").read_text()
    assert f"live view: http://127.0.0.1:{web}/?url=rerun%2Bhttp://127.0.0.1:{grpc}/proxy" in log
    recording, entities, _, images = read_rrd(tmp_path / "live.rrd")
    assert recording == "live"
    for series in ("state", "command"):
        times = entities[f"/joints/elbow_flex/{series}"]
        assert len(times) == 60 and np.allclose(np.diff(times), 1 / 30, atol=1e-6)  # the episode's pace
    assert "/joints/gripper/chunks/2" in entities and "/joints/gripper/chunks/3" not in entities
    assert len(entities["/cameras/front"]) >= 5 and images["/cameras/wrist"].std() > 5
