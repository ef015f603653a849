"""Bad input to a node started as a real process: one error line naming the fix, exit code 2,
nothing else started (the whole system over DDS is test_ros_system.py)."""
import pytest

from helpers import Observer, start, stop

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("executable, params, error", [
    ("arm_driver_node", ["backend:=bogus"], "unknown backend 'bogus'; use one of sim, so101"),
    ("camera_node", ["source:=webcam"], "unknown source 'webcam'; use one of sim, opencv, video"),
    ("camera_node", ["source:=opencv", "device:=/dev/video99"], "cannot open device '/dev/video99' (video devices found:"),
    ("recorder_node", ["bag_images:=png"], "unknown bag_images 'png'; use one of raw, jpeg"),
])
def test_bad_parameter_values_are_one_error_and_exit_2(ros_env, tmp_path, executable, params, error):
    proc = start(executable, *params, env=ros_env, cwd=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and error in errors[0], out


@pytest.mark.parametrize("executable, params, error", [
    ("policy_node", ["model_path:=/no/such/model"], "/no/such/model"),
    ("recorder_node", ["out:=/dev/null/episodes"], "cannot write to output folder /dev/null/episodes"),
])
def test_a_managed_node_with_bad_input_fails_to_configure_with_one_error(ros_env, tmp_path, executable, params, error):
    """Managed nodes load and open in configure: bad input fails the transition with one error
    line and leaves the node unconfigured (as ROS 2 lifecycle nodes do), still answering."""
    proc = start(executable, *params, env=ros_env, cwd=tmp_path)
    observer = Observer("/nsmtest")
    try:
        assert observer.state(executable) == "unconfigured"
        assert not observer.transition(executable, "configure")
        assert observer.state(executable) == "unconfigured"
    finally:
        observer.close()
        code, out = stop(proc)
    assert code == 0, out
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "configure failed" in errors[0] and error in errors[0], out
