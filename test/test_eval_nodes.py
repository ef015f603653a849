"""Evaluation through the deployed nodes (nsm.ros.evaluate): the bringup graph as processes,
a new simulated world per episode set over ROS (`seed` parameter + lifecycle), each episode
scored by the scene's own check. The scripted expert drives it here: it must succeed, which
a graph that reset nothing (it plans from the published cube pose) or scored nothing could not
show for two different worlds."""
import json

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from helpers import first_frames_match_their_worlds
from nsm.recording.episodes import episode_info

pytestmark = pytest.mark.ros


def test_each_episode_gets_its_seeds_world_and_is_scored_by_the_scene(ros_env, tmp_path):
    from nsm.ros.evaluate import evaluate_nodes

    seen = []
    r = evaluate_nodes(None, episodes=2, out=tmp_path / "eval", seed=1000, seconds=11.0,
                       on_episode=lambda k, ok: seen.append((k, ok)))
    assert r["outcomes"] == [True, True] and r["successes"] == 2 and r["seeds"] == "1000..1001"
    assert seen == [(0, True), (1, True)]
    assert r["wilson95"][0] > 0.3 and 0 < r["mean_seconds_to_success"] < 11.0
    assert "arm_driver_node" in r["through"] and "camera_front" in r["through"] and "recorder_node" in r["through"]
    # the recorded episodes start from each seed's world: the cube where SimScene(seed) puts it
    episodes = sorted((tmp_path / "eval" / "episodes").glob("episode_*.hdf5"))
    firsts = first_frames_match_their_worlds(episodes, 1000)
    assert len(firsts) == 2 and np.abs(firsts[0].astype(int) - firsts[1].astype(int)).mean() > 0.2
    # recorder_node keeps the scene's outcome in each episode and announces it; db_bridge_node logs it
    assert [episode_info(e).success for e in episodes] == ["True", "True"]
    engine = create_engine(f"sqlite:///{tmp_path / 'eval' / 'telemetry.db'}")
    with engine.connect() as conn:
        logged = [json.loads(p) for p in conn.execute(text(
            "SELECT payload FROM robot_telemetry WHERE data_type = 'episode' AND robot_id = 'eval' ORDER BY seq")).scalars()]
    engine.dispose()
    assert [(e["path"], e["success"], e["policy"]) for e in logged] == [(str(p), True, "scripted") for p in episodes]
    assert all(e["frames"] > 250 and 10.5 < e["duration_s"] < 13 for e in logged), logged


def test_nsm_eval_ros_runs_the_node_evaluation_and_says_what_is_wrong(ros_env, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "nsm.cli", "eval", "--model", str(tmp_path / "nothing"), "--ros",
                           "--episodes", "1"], capture_output=True, text=True, timeout=120, env=ros_env)
    assert done.returncode == 2 and "error:" in done.stderr and str(tmp_path / "nothing") in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    # the nodes' runtime is set in their YAML: an eval option that would be ignored there is refused
    done = subprocess.run([sys.executable, "-m", "nsm.cli", "eval", "--model", str(tmp_path / "nothing"), "--ros",
                           "--merge", "ensemble"], capture_output=True, text=True, timeout=120, env=ros_env)
    assert done.returncode == 2 and "arm_driver_node.merge" in done.stderr and "Traceback" not in done.stderr, done.stderr
