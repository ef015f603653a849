"""The whole robot over real DDS: every node of `nsm.bringup.plan` (what bringup.launch.py
starts) as its own process, started from its console script with the launch file's
parameter files and overrides, in simulation, on localhost and a domain of our own.

Frames reach the policy (ACT on ONNX Runtime), chunks reach the driver, joint_states flow
at the control rate, an episode is recorded as HDF5 and MCAP, telemetry rows reach
PostgreSQL. Then the policy node is killed: the driver holds position and says so on
/diagnostics, bad input is refused, and the other nodes keep running.
"""
import time

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from helpers import Observer, launch, stop, wait_for
from nsm.bringup import NodeLaunch, plan
from nsm.camera.sim import SimCamera
from nsm.recording.episodes import read_chunks
from nsm.ros import convert
from nsm.sim.scene import SimScene

pytestmark = pytest.mark.ros
NS = "/nsmsys"


def test_the_expert_completes_the_task_through_the_nodes_in_one_simulated_world(ros_env, tmp_path, contract):
    """bringup in sim: the arm driver steps the one world, the camera renders it (the cube moves
    in the image), the pick-place expert in policy_node plans from the published cube pose, and
    the scene's check, published on sim/success and /diagnostics, says the task was done."""
    from geometry_msgs.msg import PoseStamped
    from sensor_msgs.msg import Image
    from std_msgs.msg import Bool

    from nsm.ros.node_main import LATCHED_QOS, SENSOR_QOS

    seed = 3
    nodes = plan(namespace=NS, cameras="front", record="false", seed=str(seed),
                 db_url=f"sqlite:///{tmp_path / 'telemetry.db'}")
    assert [n.name for n in nodes] == ["camera_front", "arm_driver_node", "policy_node", "db_bridge_node"]
    procs = {n.name: launch(n, ros_env, tmp_path, NS) for n in nodes}
    observer = Observer(NS)
    success = observer.watch(Bool, "sim/success", LATCHED_QOS)
    cube = observer.watch(PoseStamped, "sim/cube_pose", keep=1)
    images = observer.watch(Image, "camera/front/image_raw", SENSOR_QOS, keep=1)
    try:
        observer.bring_up(nodes)
        wait_for(lambda: cube and images, 180, procs, "the cube pose and front images")
        first_cube = convert.msg_to_pose(cube[-1])
        wait_for(lambda: success and success[-1].data, 90, procs, "sim/success true")
        level, message, values = wait_for(lambda: (d := observer.diag("arm_driver_node"))[2].get("task_success") == "True"
                                          and d, 10, procs, "task_success on /diagnostics")
        # the expert's plan ends at home and holds: wait until the arm is still, then compare views
        wait_for(lambda: len(p := observer.states_since(time.monotonic() - 1.0)[1]) > 20 and np.ptp(p, axis=0).max() < 1e-3,
                 30, procs, "the arm at rest")
        time.sleep(0.5)
        _, positions = observer.states_since(time.monotonic() - 0.3)
        final_cube, seen = convert.msg_to_pose(cube[-1]), convert.msg_to_image(images[-1])
    finally:
        observer.close()
        results = {name: stop(p) for name, p in procs.items()}
    for name, (code, out) in results.items():
        assert code == 0, f"{name}: {out}"
    assert values["torque_on"] == "True" and level in (0, 1), message
    assert np.linalg.norm(final_cube[:2] - first_cube[:2]) > 0.1  # carried to the goal, > 10 cm away

    def render(cube_qpos: np.ndarray) -> np.ndarray:
        """The one-process render of a world state (what `nsm demo`'s camera shows)."""
        scene = SimScene(contract, seed)
        scene.set_joint_positions(positions[-1])
        scene.set_cube_qpos(cube_qpos)
        camera = SimCamera(scene, contract.camera("front")).start()
        try:
            time.sleep(0.3)
            return camera.latest().image
        finally:
            camera.stop()

    same, cube_left_behind = render(final_cube), render(first_cube)
    diff_same = np.abs(seen.astype(int) - same).mean()
    diff_behind = np.abs(seen.astype(int) - cube_left_behind).mean()
    assert diff_same < 0.5, diff_same  # the camera node shows the driver's world as it is
    assert diff_behind > 10 * max(diff_same, 0.01), (diff_same, diff_behind)  # and the cube is not where it started


def query(dsn: str, sql: str, robot_id: str, empty=None):
    """One value from the robot's telemetry in PostgreSQL; `empty` until the bridge has created the table."""
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), {"r": robot_id}).scalar()
    except Exception:  # noqa: BLE001 - the bridge has not created the table yet
        return empty
    finally:
        engine.dispose()


def test_the_robot_runs_records_logs_and_holds_when_the_policy_dies(ros_env, tmp_path, contract, pg_db):
    import h5py
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image
    from std_msgs.msg import String
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from nsm.policy.export import export_onnx
    from nsm.policy.init import init_act

    cam = contract.camera("wrist")
    model = init_act(tmp_path / "act", ["wrist"], len(contract.joints), (cam.height, cam.width), chunk_size=30,
                     small=True)
    export_onnx(model)
    nodes = plan(namespace=NS, cameras="wrist", model_path=str(model.path), db_url=pg_db, robot_id="systest")
    assert [n.name for n in nodes] == ["camera_wrist", "arm_driver_node", "policy_node", "recorder_node",
                                       "db_bridge_node"]
    procs = {n.name: launch(n, ros_env, tmp_path, NS) for n in nodes}
    observer = Observer(NS)
    try:
        observer.bring_up(nodes)
        # frames reach the policy and its chunks reach the driver
        # (the policy's 1 Hz diagnostics can count frames before its first inference is timed)
        wait_for(lambda: int(observer.diag("policy_node")[2].get("wrist_count", 0)) > 0
                 and "inference_ms_p50" in observer.diag("policy_node")[2]
                 and int(observer.diag("arm_driver_node")[2].get("chunks_count", 0)) > 0, 180, procs,
                 "camera frames at the policy and action chunks at the driver")
        assert float(observer.diag("policy_node")[2]["inference_ms_p50"]) > 0
        level, _, values = observer.diag("camera_wrist")
        assert level in (0, 1) and int(values["published_count"]) > 0  # reported, and published frames

        # joint_states at the control rate (over the 10 s the driver's loop_hz averages)
        t = time.monotonic()
        time.sleep(10.0)
        stamps, _ = observer.states_since(t)
        assert len(stamps) / (stamps[-1] - stamps[0]) > 0.9 * contract.fps
        assert float(observer.diag("arm_driver_node")[2]["loop_hz"]) > 0.9 * contract.fps
        _, positions = observer.states_since(0.0)
        assert np.ptp(positions, axis=0).max() > 0.05, "the policy's chunks did not move the arm"

        # an episode: HDF5 and MCAP
        asked = time.monotonic()
        started = observer.trigger(f"{NS}/recorder/start_episode")
        assert started.success, started.message
        time.sleep(4.0)
        stopped = observer.trigger(f"{NS}/recorder/stop_episode")
        assert stopped.success, stopped.message
        lasted = time.monotonic() - asked  # the episode ran inside this (a loaded machine answers the stop late)
        assert "episode_0.hdf5" in stopped.message and "0 dropped" in stopped.message
        assert "task not done" in stopped.message  # the scene's check (an untrained policy), kept in the episode
        with h5py.File(tmp_path / "runs" / "episodes" / "episode_0.hdf5") as f:
            frames = f["action"].shape[0]
            assert frames >= 90  # 4 s at 30 Hz
            assert f["observations/images/wrist"].shape == (frames, cam.height, cam.width, 3)
            chunks = read_chunks(f)  # the policy's action_chunk messages, each observed before it arrived
        assert len(chunks) >= 2 and all(0 <= c.observed < c.arrived < lasted for c in chunks)
        assert all(c.actions.shape[1] == len(contract.joints) for c in chunks)
        with Reader(tmp_path / "runs" / "episodes" / "episode_0") as bag:
            counts = {c.topic: c.msgcount for c in bag.connections}
        assert counts == {f"{NS}/joint_states": frames, f"{NS}/joint_commands": frames,
                          f"{NS}/camera/wrist/image_raw/compressed": frames, f"{NS}/action_chunk": len(chunks),
                          f"{NS}/robot_description": 1, "/tf_static": 1, "/tf": frames}  # the arm's model for RViz

        # telemetry rows in PostgreSQL, the finished episode among them
        wait_for(lambda: query(pg_db, "SELECT count(*) FROM robot_telemetry WHERE robot_id = :r AND data_type = "
                               "'joint_states'", "systest", 0) > 150, 60, procs, "joint_states rows in PostgreSQL")
        episode = wait_for(lambda: query(pg_db, "SELECT payload FROM robot_telemetry WHERE robot_id = :r AND "
                                         "data_type = 'episode'", "systest"), 30, procs, "the episode's row")
        assert episode["path"] == str(tmp_path / "runs" / "episodes" / "episode_0.hdf5") and episode["success"] is False
        assert episode["frames"] == frames

        # the policy dies: the driver holds position and says so
        procs["policy_node"].kill()
        procs["policy_node"].wait(timeout=10)
        killed_at = time.monotonic()
        level, message, values = wait_for(
            lambda: (d := observer.diag("arm_driver_node"))[1].startswith("holding position") and d, 30,
            {k: p for k, p in procs.items() if k != "policy_node"}, "the driver reporting that it holds")
        assert level == 1 and float(values["seconds_since_chunk"]) > 0 and values["torque_on"] == "True"
        time.sleep(2.0)
        t = time.monotonic()
        # bad input while holding: a chunk for 5 joints and a mono image; neither reaches the arm
        bad = JointTrajectory(joint_names=contract.joint_names[:5],
                              points=[JointTrajectoryPoint(positions=[0.5] * 5)])
        observer.publish(JointTrajectory, "action_chunk", bad)
        observer.publish(Image, "camera/wrist/image_raw", Image(height=2, width=2, encoding="mono8", step=2,
                                                                 data=bytes(4)))
        observer.publish(String, "recorder/episodes", String(data='{"path": 1}'))
        time.sleep(1.0)
        stamps, positions = observer.states_since(t)
        assert len(stamps) / (stamps[-1] - stamps[0]) > 0.9 * contract.fps  # the loop runs on
        assert np.ptp(positions, axis=0).max() < 0.02, "the arm moved after the policy died"
        assert int(observer.diag("arm_driver_node")[2]["rejected_chunks"]) >= 10
        assert time.monotonic() - killed_at > 3
        assert all(p.poll() is None for name, p in procs.items() if name != "policy_node")
    finally:
        observer.close()
        results = {name: stop(p) for name, p in procs.items()}
    for name, (code, out) in results.items():
        if name != "policy_node":
            assert code == 0, f"{name}: {out}"
    driver_out, recorder_out = results["arm_driver_node"][1], results["recorder_node"][1]
    assert driver_out.count("action_chunk has joints") == 1, driver_out  # throttled: one line for ten
    assert recorder_out.count("image encoding 'mono8' is not supported") == 1, recorder_out
    assert results["db_bridge_node"][1].count("recorder/episodes: not an episode row") == 1, results["db_bridge_node"][1]


def test_predictor_node_turns_the_robots_topics_into_predictions(ros_env, tmp_path, sim_models):
    """arm_driver_node (sim, scripted policy) -> predictor_node (collision model) -> `predictions`,
    the hub (a real Socket.IO server on localhost) and the predictions table."""
    import json as json_module

    from std_msgs.msg import String

    from nsm.ai.dev_hub import DevHub

    _, models = sim_models
    hub = DevHub(token="t0ken").start()
    db = f"sqlite:///{tmp_path / 'predictions.db'}"
    predictor = next(n for n in plan(models=str(models["collision"]), robot_id="EP01", hub_url=hub.url)
                     if n.executable == "predictor_node")
    nodes = [NodeLaunch("arm_driver_node", "arm_driver_node"), NodeLaunch("policy_node", "policy_node"),
             NodeLaunch(predictor.executable, predictor.name, {**predictor.overrides, "db_url": db})]
    procs = {n.name: launch(n, {**ros_env, "NSM_HUB_TOKEN": "t0ken"}, tmp_path, NS) for n in nodes}
    observer = Observer(NS)
    received = []
    observer.node.create_subscription(String, "predictions", lambda m: received.append(json_module.loads(m.data)), 10)
    try:
        observer.bring_up(nodes)
        wait_for(lambda: len(received) >= 20 and len(hub.updates()) >= 20, 120, procs, "predictions from predictor_node")
        level, _, values = wait_for(lambda: (d := observer.diag("predictor_node"))[2].get("hub_sent") and d, 30, procs,
                                    "predictor_node diagnostics")
    finally:
        observer.close()
        results = {name: stop(p) for name, p in procs.items()}
        hub.stop()
    for name, (code, out) in results.items():
        assert code == 0, f"{name}: {out}"
    assert level == 0 and values["hub_connected"] == "True" and int(values["skipped_rows"]) == 0
    message = received[-1]
    assert message["type"] == "update_data" and message["data"]["type"] == "ai_prediction"
    assert message["data"]["model"] == "collision" and message["data"]["robot_id"] == "EP01"
    assert 0 <= message["data"]["value"] <= 1
    engine = create_engine(db)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM predictions")).scalar_one() >= 20
    engine.dispose()
