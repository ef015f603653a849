"""Bring up nsm on one robot: cameras, arm driver, policy, recorder, DB bridge, robot_state_publisher.

    ros2 launch nsm bringup.launch.py                       # simulated SO-101, SQLite telemetry
    ros2 launch nsm bringup.launch.py namespace:=/ep01 cameras:=front db_url:=postgresql://...
    ros2 launch nsm bringup.launch.py sim:=false port:=/dev/so101 calibration:=... model_path:=models/act

Every node reads config/<node>.yaml (installed to share/nsm/config); launch arguments
override single values. The managed nodes (arm driver, policy, recorder) are driven through
configure -> activate here, as the system test drives them over lifecycle_msgs services.
Which nodes start with which overrides is `nsm.bringup.plan`,
shared with the system test (test/test_ros_system.py).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.conditions import IfCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from nsm.bringup import ARGUMENTS, NODE_PARAMS, plan  # the nsm package installed beside this file
from nsm.sim.scene import urdf_xml


def _managed(node: LifecycleNode) -> list:
    """The lifecycle node, driven to active: configure at start, activate once configure has
    brought it to inactive (only then: a later deactivate is left alone)."""
    def change(transition: int) -> EmitEvent:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition))

    activate = RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, start_state="configuring",
                                                      goal_state="inactive",
                                                      entities=[change(Transition.TRANSITION_ACTIVATE)]))
    return [node, activate, change(Transition.TRANSITION_CONFIGURE)]


def _nodes(context):
    config = Path(get_package_share_directory("nsm")) / "config"
    args = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS if name != "use_rviz"}
    ns = args["namespace"]
    actions = []
    for n in plan(**args):
        options = dict(package="nsm", executable=n.executable, name=n.name, namespace=ns, output="screen",
                       parameters=[str(config / NODE_PARAMS[n.executable]), n.overrides])
        actions += _managed(LifecycleNode(**options)) if n.managed else [Node(**options)]
    actions.append(Node(package="robot_state_publisher", executable="robot_state_publisher", namespace=ns,
                        parameters=[{"robot_description": urdf_xml()}]))
    return actions


def generate_launch_description():
    return LaunchDescription([
        *(DeclareLaunchArgument(name, default_value=default, description=doc) for name, (default, doc) in ARGUMENTS.items()),
        OpaqueFunction(function=_nodes),
        Node(package="rviz2", executable="rviz2", condition=IfCondition(LaunchConfiguration("use_rviz")),
             arguments=["-d", str(Path(get_package_share_directory("nsm")) / "config" / "nsm.rviz")]),
    ])
