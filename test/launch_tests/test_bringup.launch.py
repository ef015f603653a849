"""launch_testing on the real bringup.launch.py: needs launch, launch_ros and
robot_state_publisher, which are not on PyPI, so pytest skips this folder (conftest) and
docker/Dockerfile.ros runs it:

    launch_test test/launch_tests/test_bringup.launch.py

Simulated robot with one camera: joint_states flow, every nsm node reports on
/diagnostics, robot_state_publisher publishes the SO-101 description, and every process
exits cleanly on shutdown.
"""
import os
import time
import unittest

import launch
import launch_testing.actions
import launch_testing.asserts
import pytest
import rclpy
from ament_index_python.packages import get_package_share_directory
from diagnostic_msgs.msg import DiagnosticArray
from launch.launch_description_sources import PythonLaunchDescriptionSource
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String

NODES = {"/nsm/camera_front", "/nsm/arm_driver_node", "/nsm/policy_node", "/nsm/recorder_node", "/nsm/db_bridge_node"}


@pytest.mark.launch_test
def generate_test_description():
    bringup = os.path.join(get_package_share_directory("nsm"), "launch", "bringup.launch.py")
    return launch.LaunchDescription([
        launch.actions.IncludeLaunchDescription(PythonLaunchDescriptionSource(bringup),
                                                launch_arguments={"cameras": "front"}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


class TestBringup(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("bringup_launch_test")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def collect(self, msg_type, topic, enough, timeout=180.0, qos=10):
        received = []
        sub = self.node.create_subscription(msg_type, topic, received.append, qos)
        deadline = time.monotonic() + timeout
        while not enough(received) and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.node.destroy_subscription(sub)
        return received

    def test_joint_states_and_images_flow(self):
        self.assertGreaterEqual(len(self.collect(JointState, "/nsm/joint_states", lambda r: len(r) >= 60)), 60)
        self.assertTrue(self.collect(Image, "/nsm/camera/front/image_raw", lambda r: len(r) >= 5,
                                     qos=rclpy.qos.qos_profile_sensor_data))

    def test_every_nsm_node_reports_diagnostics(self):
        seen = set()

        def enough(received):
            seen.update(s.name for msg in received for s in msg.status)
            return NODES <= seen

        self.collect(DiagnosticArray, "/diagnostics", enough)
        self.assertLessEqual(NODES, seen)

    def test_robot_state_publisher_has_the_so101_description(self):
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        received = self.collect(String, "/nsm/robot_description", lambda r: bool(r), qos=latched)
        self.assertIn('<joint name="shoulder_pan"', received[0].data)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_every_process_exits_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
