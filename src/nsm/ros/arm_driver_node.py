"""arm_driver_node: the control loop on a timer at the contract rate.

Subscribes `action_chunk` (JointTrajectory, stamped with the observation time) and merges
it into an ActionQueue by control step; every tick sends the queued action through the
safety filter (nothing queued, or disabled: hold) and publishes `joint_states`,
`joint_commands` (what was actually sent) and, once a second, `battery`.
Service `arm_driver/enable` (std_srvs/SetBool).
"""
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import BatteryState, JointState
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from nsm.arm.safety import SafetyFilter
from nsm.arm.sim import SimArm
from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.policy.action_queue import MERGE_MODES, ActionQueue
from nsm.ros import convert
from nsm.ros.node_main import COMMANDS_QOS, declare, main_for
from nsm.sim.battery import SimBattery
from nsm.sim.scene import SimScene

BACKENDS = ("sim", "so101")


class ArmDriverNode(Node):
    def __init__(self):
        super().__init__("arm_driver_node")
        p = declare(self, robot="so101", backend="sim", seed=0, port="/dev/ttyACM0", calibration="",
                    merge="replace", merge_coeff=-1.0)
        if p.backend not in BACKENDS:
            raise NsmError(f"arm_driver_node: unknown backend '{p.backend}'; use one of {', '.join(BACKENDS)}")
        if p.merge not in MERGE_MODES:
            raise NsmError(f"arm_driver_node: unknown merge '{p.merge}'; use one of {', '.join(MERGE_MODES)}")
        self.contract = load_contract(p.robot)
        self.names = self.contract.joint_names
        if p.backend == "sim":
            self.arm = SimArm(SimScene(self.contract, p.seed))
        else:  # every input checked above: the arm is only addressed once the node can run
            from nsm.arm.so101 import So101Arm

            self.arm = So101Arm(self.contract, p.port, Path(p.calibration))
        self.queue = ActionQueue(p.merge, p.merge_coeff if p.merge_coeff >= 0 else None)
        self.safety = SafetyFilter(self.contract, self.arm.read().position)
        self.battery = SimBattery()
        self.rejected_chunks = 0
        self.t0 = self.now()
        self.step = 0
        self.pub_state = self.create_publisher(JointState, "joint_states", COMMANDS_QOS)
        self.pub_command = self.create_publisher(JointState, "joint_commands", COMMANDS_QOS)
        self.pub_battery = self.create_publisher(BatteryState, "battery", COMMANDS_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", COMMANDS_QOS)
        self.create_subscription(JointTrajectory, "action_chunk", self.on_chunk, COMMANDS_QOS)
        self.create_service(SetBool, "arm_driver/enable", self.on_enable)
        self.create_timer(self.contract.period, self.tick)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_chunk(self, msg: JointTrajectory) -> None:
        try:
            stamp, offsets, positions = convert.msg_to_chunk(msg, self.names)
        except (NsmError, ValueError) as exc:
            self.rejected_chunks += 1
            self.get_logger().warning(f"action_chunk rejected: {exc}", throttle_duration_sec=5.0)
            return
        steps = np.round((stamp + offsets - self.t0) / self.contract.period).astype(int)
        if len(steps) and np.all(np.diff(steps) == 1):
            self.queue.merge(positions, int(steps[0]), now=self.step)

    def on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.safety.enable(request.data, self.arm.read().position)
        response.success, response.message = True, "enabled" if request.data else "disabled: holding position"
        return response

    def tick(self) -> None:
        now = self.now()
        self.step = int(round((now - self.t0) / self.contract.period))
        reading = self.arm.read()
        action = self.queue.pop(self.step)
        command = self.safety.filter(action, now)
        if self.safety.torque_on != self.arm.torque_on:
            self.arm.set_torque(self.safety.torque_on)
        self.arm.send(command)
        self.pub_state.publish(convert.joint_state_to_msg(self.names, now, reading.position, reading.velocity, reading.effort))
        self.pub_command.publish(convert.joint_state_to_msg(self.names, now, command))
        if self.step % int(self.contract.fps) == 0:
            b = self.battery.update(1.0, reading.effort)
            self.pub_battery.publish(convert.battery_to_msg(b.voltage, b.current, b.percentage, now))
            self.pub_diag.publish(convert.diagnostics_msg("arm_driver_node", {
                "enabled": self.safety.enabled, "torque_on": self.safety.torque_on,
                "queued_actions": self.queue.remaining(self.step),
                "rejected_commands": self.safety.rejected, "rejected_chunks": self.rejected_chunks}, now))


    def destroy_node(self) -> None:
        self.arm.close()
        super().destroy_node()


main = main_for(ArmDriverNode)
