"""Nodes as real processes over DDS (localhost only, a domain of our own)."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.ros
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


def start(executable, *params, env, cwd):
    args = [str(BIN / executable), "--ros-args", "-r", "__ns:=/nsmtest",
            "--params-file", str(ROOT / "config" / f"{executable.removesuffix('_node')}.yaml")]
    for p in params:
        args += ["-p", p]
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return proc.returncode, out


def rows(db):
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT payload FROM robot_telemetry WHERE data_type='joint_states' ORDER BY seq")).scalars().all()
            return [json.loads(p) for p in found]
    except Exception:
        return []
    finally:
        engine.dispose()


def test_policy_drives_the_arm_and_joint_states_reach_the_database(ros_env, tmp_path, contract):
    db = tmp_path / "telemetry.db"
    procs = [
        start("arm_driver_node", env=ros_env, cwd=tmp_path),
        start("db_bridge_node", f"db_url:=sqlite:///{db}", f"spool_dir:={tmp_path / 'spool'}", env=ros_env, cwd=tmp_path),
        start("policy_node", env=ros_env, cwd=tmp_path),
    ]
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(rows(db)) < 150:
            time.sleep(0.5)
            assert all(p.poll() is None for p in procs), [stop(p)[1] for p in procs]
    finally:
        results = [stop(p) for p in procs]
    for code, out in results:
        assert code == 0, out
    payloads = rows(db)
    assert len(payloads) >= 150, "joint_states did not reach db_bridge_node over DDS"
    assert payloads[0]["name"] == contract.joint_names
    positions = np.array([p["position"] for p in payloads])
    # the arm moved: action chunks from policy_node reached arm_driver_node
    assert np.ptp(positions, axis=0).max() > 0.2


def test_unknown_backend_is_one_error_and_exit_2(ros_env, tmp_path):
    proc = start("arm_driver_node", "backend:=bogus", env=ros_env, cwd=tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "unknown backend 'bogus'; use one of sim, so101" in errors[0], out


def call_trigger(node, executor, service, timeout=30.0):
    import rclpy
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, service)
    assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
    future = client.call_async(Trigger.Request())
    rclpy.spin_until_future_complete(node, future, executor=executor, timeout_sec=timeout)
    assert future.done(), f"{service} did not answer"
    return future.result()


def test_recorder_records_an_episode_from_camera_and_arm_topics(ros_env, tmp_path, contract):
    import h5py
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    out = tmp_path / "episodes"
    procs = [
        start("arm_driver_node", env=ros_env, cwd=tmp_path),
        start("camera_node", "camera:=wrist", env=ros_env, cwd=tmp_path),
        start("recorder_node", f"out:={out}", "cameras:=[wrist]", env=ros_env, cwd=tmp_path),
    ]
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("recorder_test_client", namespace="/nsmtest", context=context)
    executor = SingleThreadedExecutor(context=context)
    try:
        started = call_trigger(node, executor, "/nsmtest/recorder/start_episode")
        assert started.success and started.message.endswith("episode_0.hdf5"), started.message
        time.sleep(4.0)
        stopped = call_trigger(node, executor, "/nsmtest/recorder/stop_episode")
        assert stopped.success, stopped.message
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
        results = [stop(p) for p in procs]
    for code, text_out in results:
        assert code == 0, text_out
    spec = contract.camera("wrist")
    with h5py.File(out / "episode_0.hdf5") as f:
        frames = f["action"].shape[0]
        assert frames >= 30  # ~4 s at 30 Hz once the first image arrived
        assert f["observations/images/wrist"].shape == (frames, spec.height, spec.width, 3)
        assert f["observations/qpos"].shape == (frames, len(contract.joints))
        assert f["observations/images/wrist"][-1].std() > 5
        assert np.all(np.diff(f["timestamp"][:]) > 0)


def test_policy_node_runs_act_on_camera_images_and_moves_the_arm(ros_env, tmp_path, contract):
    """camera_node -> policy_node (ACT on ONNX Runtime) -> arm_driver_node -> db_bridge_node."""
    from nsm.policy.export import export_onnx
    from nsm.policy.init import init_act

    cam = contract.camera("wrist")
    model = init_act(tmp_path / "act", ["wrist"], 6, (cam.height, cam.width), chunk_size=30, small=True)
    export_onnx(model)
    db = tmp_path / "telemetry.db"
    procs = [
        start("arm_driver_node", env=ros_env, cwd=tmp_path),
        start("camera_node", "camera:=wrist", env=ros_env, cwd=tmp_path),
        start("db_bridge_node", f"db_url:=sqlite:///{db}", f"spool_dir:={tmp_path / 'spool'}", env=ros_env, cwd=tmp_path),
        start("policy_node", f"model_path:={model.path}", env=ros_env, cwd=tmp_path),
    ]
    try:
        deadline = time.monotonic() + 90
        moved = False
        while time.monotonic() < deadline and not moved:
            time.sleep(1.0)
            assert all(p.poll() is None for p in procs), [stop(p)[1] for p in procs]
            positions = np.array([p["position"] for p in rows(db)])
            moved = len(positions) > 30 and np.ptp(positions, axis=0).max() > 0.05
    finally:
        results = [stop(p) for p in procs]
    for code, out in results:
        assert code == 0, out
    assert moved, "ACT chunks from policy_node did not move the arm"
    assert "policy act:act:onnxruntime, chunk 30" in results[-1][1]


def test_camera_node_without_its_device_is_one_error_and_exit_2(ros_env, tmp_path):
    proc = start("camera_node", "source:=opencv", "device:=/dev/video99", env=ros_env, cwd=tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "cannot open device '/dev/video99' (video devices found:" in errors[0], out
