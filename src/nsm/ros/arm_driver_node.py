"""arm_driver_node: the control loop on a timer at the contract rate.

Subscribes `action_chunk` (JointTrajectory, stamped with the observation time) and merges
it into an ActionQueue by control step; every tick sends the queued action through the
safety filter (nothing queued, or disabled: hold) and publishes `joint_states`,
`joint_commands` (what was actually sent) and, once a second, `battery`.
Service `arm_driver/enable` (std_srvs/SetBool).

When chunks stop (the policy node died or stalled) the queue runs dry and the arm holds
its last command with torque on: an SO-101 without torque drops onto the table. /diagnostics
says so (WARN "holding position: no action_chunk for N s"), with the loop rate, tick
overruns, queue depth and rejected input. `torque_off_after` > 0 cuts torque instead once
commands have been stale that long (for arms that stay put unpowered).
"""
import math
from pathlib import Path

import numpy as np
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
from nsm.ros.node_main import COMMANDS_QOS, OK, WARN, declare, main_for, publish_diagnostics, rate_values
from nsm.sim.battery import SimBattery
from nsm.sim.scene import SimScene
from nsm.stats import RateMeter

BACKENDS = ("sim", "so101")


class ArmDriverNode(Node):
    def __init__(self):
        super().__init__("arm_driver_node")
        p = declare(self, robot="so101", backend="sim", seed=0, port="/dev/ttyACM0", calibration="",
                    merge="replace", merge_coeff=-1.0, torque_off_after=0.0)
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
        self.safety = SafetyFilter(self.contract, self.arm.read().position,
                                   torque_off_after=p.torque_off_after if p.torque_off_after > 0 else math.inf)
        self.battery = SimBattery()
        self.rejected_chunks = 0
        self.chunks, self.ticks = RateMeter(), RateMeter()
        self.overruns = 0  # control steps skipped: a tick came a period or more late
        self.t0 = self.now()
        self.step = 0
        self.pub_state = self.create_publisher(JointState, "joint_states", COMMANDS_QOS)
        self.pub_command = self.create_publisher(JointState, "joint_commands", COMMANDS_QOS)
        self.pub_battery = self.create_publisher(BatteryState, "battery", COMMANDS_QOS)
        self.create_subscription(JointTrajectory, "action_chunk", self.on_chunk, COMMANDS_QOS)
        self.create_service(SetBool, "arm_driver/enable", self.on_enable)
        self.create_timer(self.contract.period, self.tick)
        publish_diagnostics(self, self.report)

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
        if not len(steps) or np.any(np.diff(steps) != 1):
            self.rejected_chunks += 1
            self.get_logger().warning("action_chunk rejected: points must be one control period apart",
                                      throttle_duration_sec=5.0)
            return
        self.queue.merge(positions, int(steps[0]), now=self.step)
        self.chunks.tick(self.now())

    def on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        self.safety.enable(request.data, self.arm.read().position)
        response.success, response.message = True, "enabled" if request.data else "disabled: holding position"
        return response

    def tick(self) -> None:
        now = self.now()
        step = int(round((now - self.t0) / self.contract.period))
        self.overruns += step > self.step + 1
        self.step = step
        self.ticks.tick(now)
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

    def report(self, now: float):
        queued = self.queue.remaining(self.step)
        since = self.chunks.age(now)
        values = {**rate_values({"loop": self.ticks, "chunks": self.chunks}, now),
                  "overruns": self.overruns, "queued_actions": queued,
                  "seconds_since_chunk": "never" if since is None else round(since, 2),
                  "enabled": self.safety.enabled, "torque_on": self.safety.torque_on,
                  "rejected_commands": self.safety.rejected, "clamped_commands": self.safety.clamped,
                  "rejected_chunks": self.rejected_chunks}
        if not self.safety.torque_on:
            return WARN, "torque off: commands went stale (call arm_driver/enable to resume)", values
        if not self.safety.enabled:
            return OK, "disabled: holding position", values
        if queued == 0:
            waited = "yet" if since is None else f"for {since:.1f} s"
            return WARN, f"holding position: no action_chunk {waited}", values
        return OK, "following action_chunk", values

    def destroy_node(self) -> None:
        self.arm.close()
        super().destroy_node()


main = main_for(ArmDriverNode)
