"""db_bridge_node: `joint_states` and `battery` into the telemetry database, or to a
remote ingest service (`db_url` = its http(s) URL, token in BACKEND_API_TOKEN).

The TelemetryWriter never blocks the callbacks: rows are batched in its own process and
spooled to disk while the database is unreachable.
"""
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import BatteryState, JointState

from nsm.ros.node_main import COMMANDS_QOS, declare, main_for
from nsm.telemetry.writer import open_writer


class DbBridgeNode(Node):
    def __init__(self):
        super().__init__("db_bridge_node")
        p = declare(self, db_url="sqlite:///runs/telemetry.db", robot_id="sim01", spool_dir="runs/telemetry-spool")
        self.writer = open_writer(p.db_url, p.robot_id, Path(p.spool_dir))
        self.create_subscription(JointState, "joint_states", self.on_joint_states, COMMANDS_QOS)
        self.create_subscription(BatteryState, "battery", self.on_battery, COMMANDS_QOS)

    def on_joint_states(self, msg: JointState) -> None:
        self.writer.log("joint_states", {"name": list(msg.name), "position": list(msg.position),
                                         "velocity": list(msg.velocity), "effort": list(msg.effort)})

    def on_battery(self, msg: BatteryState) -> None:
        self.writer.log("battery", {"value": 100.0 * msg.percentage, "unit": "percent",
                                    "voltage": msg.voltage, "current": -msg.current})

    def destroy_node(self) -> None:
        self.writer.close()
        super().destroy_node()


main = main_for(DbBridgeNode)
