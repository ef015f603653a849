"""What every nsm node shares: parameter declaration and the main() that spins it.

main() follows the ROS 2 demo nodes: clean exit on Ctrl-C / SIGTERM
(KeyboardInterrupt / ExternalShutdownException; Jazzy's rclpy.init is not yet a context
manager, so shutdown is in `finally`), nodes destroyed so they flush, and bad input (NsmError) logged as one
error line with exit code 2 so a launch file shows which node refused to start and why.
"""
import signal
import sys
import threading
from collections.abc import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions

from nsm.errors import NsmError
from nsm.ros import convert
from nsm.settings import NodeSettings

COMMANDS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)  # chunks, commands, states
SENSOR_QOS = qos_profile_sensor_data  # images: best effort, keep last 5
# a state a late joiner needs (the task check): the newest one is kept for it
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
OK, WARN, ERROR = (int.from_bytes(level) for level in (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR))
DiagnosticReport = tuple[int, str, dict]  # (level, message, key -> value)


def publish_diagnostics(node: Node, report: Callable[[float], DiagnosticReport], period: float = 1.0) -> None:
    """Publish `report(now)` on /diagnostics every `period` s under the node's full name, the
    way diagnostic_updater does (rqt_runtime_monitor and `ros2 topic echo /diagnostics` read it)."""
    pub = node.create_publisher(DiagnosticArray, "/diagnostics", COMMANDS_QOS)
    name = node.get_fully_qualified_name()

    def tick() -> None:
        now = node.get_clock().now().nanoseconds * 1e-9
        level, message, values = report(now)
        pub.publish(convert.diagnostics_msg(name, values, now, level, message))

    node.create_timer(period, tick)


class ManagedNode(LifecycleNode):
    """A lifecycle node whose transitions are four plain methods, the same way in every nsm
    node (settings in `self.p`, re-read from the parameters at each configure): `configure()`
    opens or loads (bad input: raise NsmError -> the transition fails
    with one ERROR line and the node stays unconfigured), `activate()` runs, `deactivate()`
    stops with the robot safe, `release()` undoes configure (cleanup, shutdown, exit)."""

    def configure(self) -> None: ...

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def release(self) -> None: ...

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            # parameters set while unconfigured (`ros2 param set`) take effect here, as in
            # ros2_control: e.g. the sim driver's `seed` before configure places a new world
            self.p = current(self, type(self.p))
            self.configure()
        except NsmError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            self.release()
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.activate()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self.release()  # exit (Ctrl-C) in any state: files closed, the arm released
        super().destroy_node()


def rate_values(meters: dict, now: float) -> dict:
    """`<name>_hz` and `<name>_count` of each RateMeter, for a diagnostics report."""
    return {key: value for name, meter in meters.items()
            for key, value in ((f"{name}_hz", round(meter.rate(now), 2)), (f"{name}_count", meter.count))}


def declare[S: NodeSettings](node: Node, schema: type[S]) -> S:
    """Declare every parameter of the node's schema (nsm.settings) with its default and
    description, and return the values as validated settings (bad values: one NsmError line).
    Parameters are dynamically typed so `-p seed:=3` and `merge_coeff: -1` are accepted as the
    schema reads them (the schema, not ROS, checks the types)."""
    values = {}
    for name, default in schema.ros_defaults().items():
        descriptor = ParameterDescriptor(description=schema.model_fields[name].description or "", dynamic_typing=True)
        values[name] = node.declare_parameter(name, default, descriptor).value
    return schema.parse(values)


def current[S: NodeSettings](node: Node, schema: type[S]) -> S:
    """The declared parameters' values now, validated (bad values: one NsmError line)."""
    return schema.parse({name: node.get_parameter(name).value for name in schema.model_fields})


def main_for(make_node: Callable[[], Node]) -> Callable[[list[str] | None], None]:
    """The node's process: spin until SIGINT (Ctrl-C, launch) or SIGTERM, then destroy the node.
    The signals only ask the loop to stop, between callbacks: a KeyboardInterrupt raised by the
    signal while rclpy's C++ takes a message comes out as pybind11's RuntimeError ("Unable to
    convert call argument") and the node would exit 1 without flushing (seen in CI)."""
    def main(args: list[str] | None = None) -> None:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        stopping = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stopping.set())
        try:
            node = make_node()
            executor = rclpy.get_global_executor()
            executor.add_node(node)
            try:
                while not stopping.is_set() and rclpy.ok():
                    executor.spin_once(timeout_sec=0.1)
            finally:
                node.destroy_node()  # nodes flush files and queues here
        except ExternalShutdownException:
            pass
        except NsmError as exc:
            print(f"[ERROR] {exc}", file=sys.stderr, flush=True)
            sys.exit(2)
        finally:
            rclpy.try_shutdown()

    return main
