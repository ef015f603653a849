"""What every nsm node shares: parameter declaration and the main() that spins it.

main() follows the ROS 2 demo nodes: clean exit on Ctrl-C / SIGTERM
(KeyboardInterrupt / ExternalShutdownException; Jazzy's rclpy.init is not yet a context
manager, so shutdown is in `finally`), nodes destroyed so they flush, and bad input (NsmError) logged as one
error line with exit code 2 so a launch file shows which node refused to start and why.
"""
import sys
from collections.abc import Callable
from types import SimpleNamespace

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from nsm.errors import NsmError

COMMANDS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # chunks, commands, states
SENSOR_QOS = qos_profile_sensor_data  # images: best effort, keep last 5


def declare(node: Node, **defaults) -> SimpleNamespace:
    """Declare each parameter with its default (which works in simulation); return the values."""
    return SimpleNamespace(**{name: node.declare_parameter(name, value).value for name, value in defaults.items()})


def main_for(make_node: Callable[[], Node]) -> Callable[[list[str] | None], None]:
    def main(args: list[str] | None = None) -> None:
        rclpy.init(args=args)
        try:
            node = make_node()
            try:
                rclpy.spin(node)
            finally:
                node.destroy_node()  # nodes flush files and queues here
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        except NsmError as exc:
            print(f"[ERROR] {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        finally:
            rclpy.try_shutdown()

    return main
