"""db_bridge_node: `joint_states`, `joint_commands`, `battery` and the recorder's finished episodes
(`recorder/episodes`) into the telemetry database, or to a remote ingest service (`db_url` = its
http(s) URL, token in BACKEND_API_TOKEN).

The TelemetryWriter never blocks the callbacks: rows are batched in its own process and
spooled to disk while the database is unreachable. /diagnostics: rows logged per stream,
rows waiting in this process for the writer, rows dropped (buffer full).
"""
import json
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import BatteryState, JointState
from std_msgs.msg import String

from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, OK, WARN, declare, main_for, publish_diagnostics, rate_values
from nsm.settings import DbBridgeSettings
from nsm.stats import RateMeter
from nsm.telemetry import rows
from nsm.telemetry.writer import open_writer


class DbBridgeNode(Node):
    def __init__(self):
        super().__init__("db_bridge_node")
        p = declare(self, DbBridgeSettings)
        self.writer = open_writer(p.db_url, p.robot_id, Path(p.spool_dir))
        self.rates = {name: RateMeter() for name in ("joint_states", "joint_commands", "battery", "episodes")}
        self.create_subscription(JointState, "joint_states", self.on_joint_states, COMMANDS_QOS)
        self.create_subscription(JointState, "joint_commands", self.on_joint_commands, COMMANDS_QOS)
        self.create_subscription(BatteryState, "battery", self.on_battery, COMMANDS_QOS)
        self.create_subscription(String, "recorder/episodes", self.on_episode, COMMANDS_QOS)
        publish_diagnostics(self, self.report)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_joint_states(self, msg: JointState) -> None:
        self.writer.log("joint_states", rows.joint_states(msg.name, msg.position, msg.velocity, msg.effort))
        self.rates["joint_states"].tick(self.now())

    def on_joint_commands(self, msg: JointState) -> None:
        self.writer.log("joint_commands", rows.joint_commands(msg.name, msg.position))
        self.rates["joint_commands"].tick(self.now())

    def on_battery(self, msg: BatteryState) -> None:
        self.writer.log("battery", rows.battery(*convert.battery_from_msg(msg)))
        self.rates["battery"].tick(self.now())

    def on_episode(self, msg: String) -> None:
        try:
            e = json.loads(msg.data)
            row = rows.episode(e["path"], e["success"], e["frames"], e["duration_s"], e["policy"])
        except (ValueError, TypeError, KeyError) as exc:
            self.get_logger().warning(f"recorder/episodes: not an episode row ({exc!r}): {msg.data[:200]}",
                                      throttle_duration_sec=5.0)
            return
        self.writer.log("episode", row)
        self.rates["episodes"].tick(self.now())

    def report(self, now: float):
        values = rate_values(self.rates, now)
        values |= {"waiting_bytes": self.writer.backlog_bytes, "dropped_rows": self.writer.stats.dropped}
        if self.writer.stats.dropped:
            return WARN, f"{self.writer.stats.dropped} rows dropped: the writer process falls behind", values
        return OK, "ok", values

    def destroy_node(self) -> None:
        self.writer.close()
        super().destroy_node()


main = main_for(DbBridgeNode)
