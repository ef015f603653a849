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
    assert len(errors) == 1 and "unknown backend 'bogus'; use one of sim" in errors[0], out
