"""predictor_node: the Brain Worker on the robot's topics.

`joint_states`, `joint_commands` and `battery` become telemetry rows (the payloads the DB
bridge writes) for the models in `models` (folders from `nsm ai train`); each prediction is
published on `predictions` (std_msgs/String, the hub message as JSON), sent to the
Socket.IO hub when `hub_url` is set (token from NSM_HUB_TOKEN), and stored in the
`predictions` table when `db_url` is set. /diagnostics: rows, skipped rows, predictions,
hub connection, sent and dropped messages.
"""
import json
import os
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import BatteryState, JointState
from std_msgs.msg import String

from nsm.ai.hub import HubClient
from nsm.ai.predictor import Prediction
from nsm.ai.worker import BrainWorker, PredictionStore
from nsm.errors import NsmError
from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, OK, WARN, declare, main_for, publish_diagnostics
from nsm.settings import PredictorSettings
from nsm.telemetry import rows


class PredictorNode(Node):
    def __init__(self):
        super().__init__("predictor_node")
        p = declare(self, PredictorSettings)
        models = [Path(m) for m in p.models]
        if not models:
            raise NsmError("predictor_node: no models; set models:=[folder, ...] (made by `nsm ai train`)")
        self.robot_id = p.robot_id
        self.hub = HubClient(p.hub_url, p.hub_namespace, os.environ.get("NSM_HUB_TOKEN") or None) if p.hub_url else None
        store = PredictionStore(p.db_url) if p.db_url else None
        self.pub = self.create_publisher(String, "predictions", COMMANDS_QOS)
        self.worker = BrainWorker(models, hub=self.hub, store=store, on_prediction=self.publish)
        self.get_logger().info(f"models: {', '.join(str(m) for m in models)}")
        self.create_subscription(JointState, "joint_states", self.on_joint_states, COMMANDS_QOS)
        self.create_subscription(JointState, "joint_commands", self.on_joint_commands, COMMANDS_QOS)
        self.create_subscription(BatteryState, "battery", self.on_battery, COMMANDS_QOS)
        publish_diagnostics(self, self.report)

    def on_joint_states(self, msg: JointState) -> None:
        self.worker.feed(self.robot_id, "joint_states", convert.from_time(msg.header.stamp),
                         {"position": list(msg.position), "velocity": list(msg.velocity), "effort": list(msg.effort)})

    def on_joint_commands(self, msg: JointState) -> None:
        self.worker.feed(self.robot_id, "joint_commands", convert.from_time(msg.header.stamp),
                         {"position": list(msg.position)})

    def on_battery(self, msg: BatteryState) -> None:
        self.worker.feed(self.robot_id, "battery", convert.from_time(msg.header.stamp),
                         rows.battery(*convert.battery_from_msg(msg)))

    def publish(self, prediction: Prediction) -> None:
        self.pub.publish(String(data=json.dumps(prediction.update_data())))

    def report(self, now: float):
        s = self.worker.stats
        values = {"rows": s.rows, "skipped_rows": s.skipped, "predictions": s.predictions}
        if self.hub is not None:
            values |= {"hub_connected": self.hub.connected, "hub_sent": self.hub.sent, "hub_dropped": self.hub.dropped,
                       "hub_error": self.hub.last_error}
            if not self.hub.connected:
                return WARN, f"hub {self.hub.url} unreachable: predictions wait (oldest dropped)", values
        return OK, "ok", values

    def destroy_node(self) -> None:
        if self.hub is not None:
            self.hub.close()
        if self.worker.store is not None:
            self.worker.store.close()
        super().destroy_node()


main = main_for(PredictorNode)
