"""Bad input to a node started as a real process: one error line naming the fix, exit code 2,
nothing else started (the whole system over DDS is test_ros_system.py)."""
import pytest

from helpers import start

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("executable, params, error", [
    ("arm_driver_node", ["backend:=bogus"], "unknown backend 'bogus'; use one of sim, so101"),
    ("camera_node", ["source:=webcam"], "unknown source 'webcam'; use one of sim, opencv, video"),
    ("camera_node", ["source:=opencv", "device:=/dev/video99"], "cannot open device '/dev/video99' (video devices found:"),
    ("policy_node", ["model_path:=/no/such/model"], "/no/such/model"),
    ("recorder_node", ["bag_images:=png"], "unknown bag_images 'png'; use one of raw, jpeg"),
])
def test_bad_parameter_values_are_one_error_and_exit_2(ros_env, tmp_path, executable, params, error):
    proc = start(executable, *params, env=ros_env, cwd=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and error in errors[0], out
