"""Bring up nsm on one robot: cameras, arm driver, policy, recorder, DB bridge, robot_state_publisher.

    ros2 launch nsm bringup.launch.py                       # simulated SO-101, SQLite telemetry
    ros2 launch nsm bringup.launch.py namespace:=/ep01 cameras:=front db_url:=postgresql://...

Every node reads config/<node>.yaml (installed to share/nsm/config); launch arguments
override single values.
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# executable -> its parameter file in config/ (checked by test/test_launch.py)
NODE_PARAMS = {
    "camera_node": "camera.yaml",
    "arm_driver_node": "arm_driver.yaml",
    "policy_node": "policy.yaml",
    "recorder_node": "recorder.yaml",
    "db_bridge_node": "db_bridge.yaml",
}
ARGUMENTS = {
    "namespace": ("/nsm", "namespace of every topic of this robot"),
    "cameras": ("front,wrist", "comma-separated camera names from the robot contract"),
    "seed": ("0", "cube placement of the simulated scene"),
    "db_url": ("sqlite:///runs/telemetry.db", "telemetry database URL"),
    "robot_id": ("sim01", "robot_id of the telemetry rows"),
    "use_rviz": ("false", "start RViz"),
}


def _nodes(context):
    config = Path(get_package_share_directory("nsm")) / "config"
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    ns = arg["namespace"]
    cameras = [c.strip() for c in arg["cameras"].split(",") if c.strip()]

    def node(executable, name=None, **overrides):
        return Node(package="nsm", executable=executable, name=name or executable, namespace=ns, output="screen",
                    parameters=[str(config / NODE_PARAMS[executable]), overrides])

    from nsm.sim.scene import urdf_xml  # nsm is installed beside this file

    actions = [node("camera_node", name=f"camera_{cam}", camera=cam, seed=int(arg["seed"])) for cam in cameras]
    actions += [
        node("arm_driver_node", seed=int(arg["seed"])),
        node("policy_node"),
        node("recorder_node", cameras=cameras),
        node("db_bridge_node", db_url=arg["db_url"], robot_id=arg["robot_id"]),
        Node(package="robot_state_publisher", executable="robot_state_publisher", namespace=ns,
             parameters=[{"robot_description": urdf_xml()}]),
    ]
    return actions


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=doc) for name, (default, doc) in ARGUMENTS.items()),
        OpaqueFunction(function=_nodes),
        Node(package="rviz2", executable="rviz2", condition=IfCondition(LaunchConfiguration("use_rviz")),
             arguments=["-d", str(Path(get_package_share_directory("nsm")) / "config" / "nsm.rviz")]),
    ])
