"""Bad input to a node started as a real process: one error line naming the fix, exit code 2,
nothing else started (the whole system over DDS is test_ros_system.py)."""
import subprocess
import sys
from pathlib import Path

import pytest

from nsm.bringup import NODE_PARAMS

pytestmark = pytest.mark.ros
BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("executable, param, error", [
    ("arm_driver_node", "backend:=bogus", "unknown backend 'bogus'; use one of sim, so101"),
    ("camera_node", "source:=webcam", "unknown source 'webcam'; use one of sim, opencv, video"),
    ("camera_node", "source:=opencv", "cannot open device '/dev/video99' (video devices found:"),
    ("policy_node", "model_path:=/no/such/model", "/no/such/model"),
    ("recorder_node", "bag_images:=png", "unknown bag_images 'png'; use one of raw, jpeg"),
])
def test_bad_parameter_values_are_one_error_and_exit_2(ros_env, tmp_path, executable, param, error):
    args = [str(BIN / executable), "--ros-args", "-r", "__ns:=/nsmtest",
            "--params-file", str(ROOT / "config" / NODE_PARAMS[executable]), "-p", param]
    if executable == "camera_node":
        args += ["-p", "device:=/dev/video99"]
    proc = subprocess.run(args, env=ros_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and error in errors[0], out
