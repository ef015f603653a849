"""Only the DB bridge, on a server: it subscribes the robots' telemetry topics over the network
(same namespace and ROS_DOMAIN_ID as the robot; DDS discovery across hosts) and writes them
to the server's database.

    ros2 launch nsm remote_db_bridge.launch.py namespace:=/nsm db_url:=postgresql://nsm@localhost/nsm robot_id:=EP01
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGUMENTS = {
    "namespace": ("/nsm", "namespace of the robot whose topics are bridged"),
    "db_url": ("postgresql://nsm@localhost/nsm", "the server's telemetry database"),
    "robot_id": ("EP01", "robot_id of the telemetry rows"),
}


def generate_launch_description():
    params = str(Path(get_package_share_directory("nsm")) / "config" / "db_bridge.yaml")
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=doc) for name, (default, doc) in ARGUMENTS.items()),
        Node(package="nsm", executable="db_bridge_node", name="db_bridge_node", namespace=LaunchConfiguration("namespace"),
             output="screen", parameters=[params, {"db_url": LaunchConfiguration("db_url"),
                                                   "robot_id": LaunchConfiguration("robot_id")}]),
    ])
