"""The managed nodes walked through their lifecycle over DDS with lifecycle_msgs services,
as bringup.launch.py drives them: arm driver (sim), policy (the waypoint tour) and recorder
as processes. Nothing moves or records before activate; deactivate holds the arm, stops
chunks and closes an episode in progress; activate again resumes; cleanup releases."""
import time

import h5py
import numpy as np
import pytest

from helpers import Observer, launch, stop, wait_for
from nsm.bringup import NodeLaunch

pytestmark = pytest.mark.ros
NS = "/nsmlife"


def test_transitions_start_hold_resume_and_release_the_robot(ros_env, tmp_path, contract):
    nodes = [NodeLaunch("arm_driver_node", "arm_driver_node"),
             NodeLaunch("policy_node", "policy_node", {"expert": "waypoint"}),
             # no cameras: an empty list reaches a ROS parameter as [""] (nsm.settings)
             NodeLaunch("recorder_node", "recorder_node", {"cameras": [""], "bag": False, "out": str(tmp_path / "ep")})]
    procs = {n.name: launch(n, ros_env, tmp_path, NS) for n in nodes}
    observer = Observer(NS)

    def rate_since(t: float) -> float:
        stamps, _ = observer.states_since(t)
        return len(stamps) / max(time.monotonic() - t, 1e-9)

    try:
        assert {observer.state(n.name) for n in nodes} == {"unconfigured"}
        assert not observer.trigger(f"{NS}/recorder/start_episode").success  # not active: refused
        assert observer.transition("arm_driver_node", "configure")
        t = time.monotonic()
        time.sleep(1.0)
        assert observer.state("arm_driver_node") == "inactive" and rate_since(t) == 0  # configured: nothing ticks

        assert observer.transition("arm_driver_node", "activate")
        t = time.monotonic()
        time.sleep(2.0)
        assert rate_since(t) > 0.9 * contract.fps
        _, held = observer.states_since(t)
        assert np.ptp(held, axis=0).max() < 0.05  # no policy yet: it holds (the sim settles under gravity)

        assert observer.transition("policy_node", "configure") and observer.transition("policy_node", "activate")
        assert observer.transition("recorder_node", "configure") and observer.transition("recorder_node", "activate")
        started = observer.trigger(f"{NS}/recorder/start_episode")
        assert started.success, started.message
        t = time.monotonic()
        wait_for(lambda: np.ptp(observer.states_since(t)[1], axis=0).max() > 0.05 if len(observer.states_since(t)[0])
                 else False, 30, procs, "the tour moving the arm")

        time.sleep(1.0)
        assert observer.transition("recorder_node", "deactivate")  # closes the episode in progress
        episode = tmp_path / "ep" / "episode_0.hdf5"
        with h5py.File(episode) as f:
            assert f.attrs["frames"] > 10 and not list((tmp_path / "ep").glob("*.partial"))

        assert observer.transition("policy_node", "deactivate")  # no more chunks: the queue runs dry, it holds
        level, message, _ = wait_for(lambda: (d := observer.diag("arm_driver_node"))[1].startswith("holding") and d,
                                     30, procs, "the driver holding")
        assert level == 1
        t = time.monotonic()
        time.sleep(1.5)
        _, positions = observer.states_since(t)
        assert np.ptp(positions, axis=0).max() < 0.02

        assert observer.transition("arm_driver_node", "deactivate")
        time.sleep(0.5)  # messages already in flight
        t = time.monotonic()
        time.sleep(1.0)
        assert observer.state("arm_driver_node") == "inactive" and rate_since(t) == 0

        assert observer.transition("arm_driver_node", "activate")  # resumes from where it holds
        t = time.monotonic()
        time.sleep(1.5)
        assert rate_since(t) > 0.9 * contract.fps
        _, after = observer.states_since(t)
        assert np.abs(after[0] - positions[-1]).max() < 0.02

        assert observer.transition("arm_driver_node", "deactivate")  # the others are inactive already
        for node in ("arm_driver_node", "policy_node", "recorder_node"):
            assert observer.transition(node, "cleanup") and observer.state(node) == "unconfigured"
        assert observer.transition("arm_driver_node", "unconfigured_shutdown")
        assert observer.state("arm_driver_node") == "finalized"
    finally:
        observer.close()
        results = {name: stop(p) for name, p in procs.items()}
    for name, (code, out) in results.items():
        assert code == 0, f"{name}: {out}"
