"""The whole robot over real DDS: every node of `nsm.bringup.plan` (what bringup.launch.py
starts) as its own process, started from its console script with the launch file's
parameter files and overrides, in simulation, on localhost and a domain of our own.

Frames reach the policy (ACT on ONNX Runtime), chunks reach the driver, joint_states flow
at the control rate, an episode is recorded as HDF5 and MCAP, telemetry rows reach
PostgreSQL. Then the policy node is killed: the driver holds position and says so on
/diagnostics, bad input is refused, and the other nodes keep running.
"""
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import create_engine, text

from nsm.bringup import NodeLaunch, plan
from test_ros_smoke import stop

pytestmark = pytest.mark.ros
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
NS = "/nsmsys"


def launch(node: NodeLaunch, env: dict, cwd: Path) -> subprocess.Popen:
    """What launch_ros does for a Node: the parameter file, then the overrides as a second file."""
    overrides = cwd / f"{node.name}.overrides.yaml"
    overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": node.overrides}}))
    args = [str(BIN / node.executable), "--ros-args", "-r", f"__ns:={NS}", "-r", f"__node:={node.name}",
            "--params-file", str(ROOT / "config" / node.params_file), "--params-file", str(overrides)]
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Observer:
    """The test's own node: joint_states (arrival times, positions), /diagnostics (newest per node), services."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import JointState

        from nsm.ros.node_main import COMMANDS_QOS

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("system_test_observer", namespace=NS, context=self.context)
        self.lock = threading.Lock()
        self.states: list[tuple[float, np.ndarray]] = []
        self.diagnostics: dict[str, tuple[int, str, dict]] = {}
        self.node.create_subscription(JointState, "joint_states", self._on_state, COMMANDS_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, COMMANDS_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_state(self, msg) -> None:
        with self.lock:
            self.states.append((time.monotonic(), np.array(msg.position)))

    def _on_diag(self, msg) -> None:
        with self.lock:
            for s in msg.status:
                self.diagnostics[s.name] = (s.level[0], s.message, {kv.key: kv.value for kv in s.values})

    def diag(self, node: str) -> tuple[int, str, dict]:
        with self.lock:
            return self.diagnostics.get(f"{NS}/{node}", (-1, "", {}))

    def states_since(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            recent = [(s, p) for s, p in self.states if s >= t]
        return np.array([s for s, _ in recent]), np.array([p for _, p in recent])

    def trigger(self, service: str, timeout: float = 30.0):
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, service)
        assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
        future = client.call_async(Trigger.Request())
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert future.done(), f"{service} did not answer"
        return future.result()

    def publish(self, msg_type, topic: str, msg) -> None:
        from nsm.ros.node_main import COMMANDS_QOS

        pub = self.node.create_publisher(msg_type, topic, COMMANDS_QOS)
        for _ in range(10):
            pub.publish(msg)
            time.sleep(0.05)

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def wait_for(condition, timeout: float, procs: dict, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        dead = {name: p for name, p in procs.items() if p.poll() is not None}
        assert not dead, f"{what}: {list(dead)} exited: " + " | ".join(stop(p)[1][-2000:] for p in dead.values())
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def telemetry_rows(dsn: str, robot_id: str) -> int:
    engine = create_engine(dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM robot_telemetry WHERE robot_id = :r AND "
                                     "data_type = 'joint_states'"), {"r": robot_id}).scalar_one()
    except Exception:  # noqa: BLE001 - the bridge has not created the table yet
        return 0
    finally:
        engine.dispose()


def test_the_robot_runs_records_logs_and_holds_when_the_policy_dies(ros_env, tmp_path, contract, pg_db):
    import h5py
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Image
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
    procs = {n.name: launch(n, ros_env, tmp_path) for n in nodes}
    observer = Observer()
    try:
        # frames reach the policy and its chunks reach the driver
        wait_for(lambda: int(observer.diag("policy_node")[2].get("wrist_count", 0)) > 0
                 and int(observer.diag("arm_driver_node")[2].get("chunks_count", 0)) > 0, 180, procs,
                 "camera frames at the policy and action chunks at the driver")
        assert float(observer.diag("policy_node")[2]["inference_ms_p50"]) > 0
        assert observer.diag("camera_wrist")[0] >= 0

        # joint_states at the control rate
        t = time.monotonic()
        time.sleep(5.0)
        stamps, _ = observer.states_since(t)
        assert len(stamps) / (stamps[-1] - stamps[0]) > 0.9 * contract.fps
        assert float(observer.diag("arm_driver_node")[2]["loop_hz"]) > 0.9 * contract.fps
        _, positions = observer.states_since(0.0)
        assert np.ptp(positions, axis=0).max() > 0.05, "the policy's chunks did not move the arm"

        # an episode: HDF5 and MCAP
        started = observer.trigger(f"{NS}/recorder/start_episode")
        assert started.success, started.message
        time.sleep(4.0)
        stopped = observer.trigger(f"{NS}/recorder/stop_episode")
        assert stopped.success, stopped.message
        assert "episode_0.hdf5" in stopped.message and "0 dropped" in stopped.message
        with h5py.File(tmp_path / "runs" / "episodes" / "episode_0.hdf5") as f:
            frames = f["action"].shape[0]
            assert frames >= 90  # 4 s at 30 Hz
            assert f["observations/images/wrist"].shape == (frames, cam.height, cam.width, 3)
        with Reader(tmp_path / "runs" / "episodes" / "episode_0") as bag:
            counts = {c.topic: c.msgcount for c in bag.connections}
        assert counts == {f"{NS}/joint_states": frames, f"{NS}/joint_commands": frames,
                          f"{NS}/camera/wrist/image_raw/compressed": frames}

        # telemetry rows in PostgreSQL
        wait_for(lambda: telemetry_rows(pg_db, "systest") > 150, 60, procs, "joint_states rows in PostgreSQL")

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
    procs = {n.name: launch(n, {**ros_env, "NSM_HUB_TOKEN": "t0ken"}, tmp_path) for n in nodes}
    observer = Observer()
    received = []
    observer.node.create_subscription(String, "predictions", lambda m: received.append(json_module.loads(m.data)), 10)
    try:
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
