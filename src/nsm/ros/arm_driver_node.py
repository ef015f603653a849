"""arm_driver_node: the control loop (nsm.control.ControlLoop, the one `nsm demo` runs) behind topics.

A managed (lifecycle) node: configure opens the arm, activate starts torque and the loop,
deactivate stops the loop with the arm holding, cleanup releases the arm.

The loop runs on its own real-time thread at the contract rate; the rclpy executor never
sits in a tick's path. It only hands chunks in: `action_chunk` (JointTrajectory, stamped
with the observation time) is aligned by control step and merged into a thread-safe
ChunkInbox the loop reads. What a tick produced is published from the loop thread right
after the send: `joint_states`, `joint_commands` (what was actually sent) and, once a
second, `battery` as the backend measures it (sim: the simulated pack; so101: the servos'
supply voltage, the rest NaN). Service `arm_driver/enable` (std_srvs/SetBool).

In simulation this node owns the one simulated world: it also publishes the cube's pose
(`sim/cube_pose`, geometry_msgs/PoseStamped, every tick), from which the sim cameras and the
scripted expert pose their view, and the scene's task check (`sim/success`, std_msgs/Bool,
latched, on every change; also on /diagnostics).

When chunks stop (the policy node died or stalled) the queue runs dry and the arm holds
its last command with torque on: an SO-101 without torque drops onto the table. /diagnostics
says so (WARN "holding position: no action_chunk for N s"), with the loop rate, skipped
control slots, the worst recent period, queue depth and rejected input. `torque_off_after`
> 0 cuts torque instead once commands have been stale that long.
"""
import math
from pathlib import Path

import numpy as np
from geometry_msgs.msg import PoseStamped
from sensor_msgs.msg import BatteryState, JointState
from std_msgs.msg import Bool
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from nsm.arm.base import Arm
from nsm.arm.safety import SafetyFilter
from nsm.arm.sim import SimArm
from nsm.contract import load_contract
from nsm.control import ChunkInbox, ControlLoop, Tick
from nsm.errors import NsmError
from nsm.ros import convert
from nsm.ros.node_main import (
    COMMANDS_QOS,
    ERROR,
    LATCHED_QOS,
    OK,
    WARN,
    ManagedNode,
    declare,
    main_for,
    publish_diagnostics,
    rate_values,
)
from nsm.settings import ArmDriverSettings
from nsm.sim.scene import SimScene
from nsm.stats import RateMeter

RECENT_PERIODS = 300  # the loop rate and worst period over the last 10 s go on /diagnostics


class ArmDriverNode(ManagedNode):
    """Managed: configure opens the arm (the sim scene, or the SO-101's port), activate turns
    torque on and starts the loop, deactivate stops it with the arm holding its last command,
    cleanup releases the arm (LeRobot's disconnect turns torque off)."""

    def __init__(self):
        super().__init__("arm_driver_node")
        self.p = p = declare(self, ArmDriverSettings)
        self.contract = load_contract(p.robot)
        self.names = self.contract.joint_names
        self.scene: SimScene | None = None
        self.arm: Arm | None = None
        self.loop: ControlLoop | None = None
        self.inbox: ChunkInbox | None = None
        self.timer = None
        self.rejected_chunks = 0
        self.chunks = RateMeter()
        self.success: bool | None = None
        self.pub_state = self.create_publisher(JointState, "joint_states", COMMANDS_QOS)
        self.pub_command = self.create_publisher(JointState, "joint_commands", COMMANDS_QOS)
        self.pub_battery = self.create_publisher(BatteryState, "battery", COMMANDS_QOS)
        if p.backend == "sim":
            self.pub_cube = self.create_publisher(PoseStamped, "sim/cube_pose", COMMANDS_QOS)
            self.pub_success = self.create_publisher(Bool, "sim/success", LATCHED_QOS)
        self.create_subscription(JointTrajectory, "action_chunk", self.on_chunk, COMMANDS_QOS)
        self.create_service(SetBool, "arm_driver/enable", self.on_enable)
        publish_diagnostics(self, self.report)

    def configure(self) -> None:
        p = self.p
        if p.backend == "sim":  # a new world (of `seed` as set now): its task check is published afresh
            self.scene = SimScene(self.contract, p.seed)
            self.arm = SimArm(self.scene)
            self.success = None
        else:
            from nsm.arm.so101 import So101Arm, parse_pack_curve

            self.arm = So101Arm(self.contract, p.port, Path(p.calibration), parse_pack_curve(p.pack_curve))

    def activate(self) -> None:
        p = self.p
        self.inbox = ChunkInbox(p.merge, p.merge_coeff if p.merge_coeff >= 0 else None)
        safety = SafetyFilter(self.contract, self.arm.read().position,
                              torque_off_after=p.torque_off_after if p.torque_off_after > 0 else math.inf)
        if not self.arm.torque_on:
            self.arm.set_torque(True)
        self.loop = ControlLoop(self.contract, self.arm, self.inbox, safety, sinks=[self.publish], clock=self.now)
        self.loop.start(thread=p.loop == "thread")
        if p.loop == "timer":  # the executor runs each tick: kept only for bench/control_loop.py's comparison
            self.timer = self.create_timer(self.contract.period, self.loop.tick_now)

    def deactivate(self) -> None:
        """Stop the loop: the arm holds its last command, torque on."""
        if self.timer is not None:
            self.destroy_timer(self.timer)
            self.timer = None
        if self.loop is not None:
            self.loop.stop()
        self.loop = None

    def release(self) -> None:
        self.deactivate()
        if self.arm is not None:
            self.arm.close()
        self.arm, self.scene = None, None

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_chunk(self, msg: JointTrajectory) -> None:
        """On the executor: align the chunk to control steps and hand it to the loop."""
        loop, inbox = self.loop, self.inbox
        if loop is None:
            return  # not active: nothing moves
        try:
            stamp, offsets, positions = convert.msg_to_chunk(msg, self.names)
        except (NsmError, ValueError) as exc:
            self.rejected_chunks += 1
            self.get_logger().warning(f"action_chunk rejected: {exc}", throttle_duration_sec=5.0)
            return
        steps = np.array([loop.step_at(stamp + offset) for offset in offsets], dtype=int)
        if not len(steps) or np.any(np.diff(steps) != 1):
            self.rejected_chunks += 1
            self.get_logger().warning("action_chunk rejected: points must be one control period apart",
                                      throttle_duration_sec=5.0)
            return
        inbox.put(positions, int(steps[0]), now=loop.step)
        self.chunks.tick(self.now())

    def on_enable(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if self.loop is None:
            response.success, response.message = False, "not active (lifecycle: configure, then activate)"
            return response
        self.loop.enable(request.data)
        response.success, response.message = True, "enabled" if request.data else "disabled: holding position"
        return response

    def publish(self, tick: Tick) -> None:
        """On the loop thread, after the send: what this tick read and sent."""
        if not self.context.ok():
            return  # shutting down (Ctrl-C): the loop ends with this tick
        r = tick.reading
        self.pub_state.publish(convert.joint_state_to_msg(self.names, tick.stamp, r.position, r.velocity, r.effort))
        self.pub_command.publish(convert.joint_state_to_msg(self.names, tick.stamp, tick.command))
        if tick.battery is not None:
            b = tick.battery
            self.pub_battery.publish(convert.battery_to_msg(b.voltage, b.current, b.percentage, tick.stamp, b.simulated))
        if self.scene is not None:
            self.pub_cube.publish(convert.pose_to_msg(self.scene.cube_qpos(), tick.stamp))
            success = self.scene.success()
            if success != self.success:
                self.success = success
                self.pub_success.publish(Bool(data=success))

    def report(self, now: float):
        loop = self.loop
        if loop is None:
            state = "inactive: holding position" if self.arm is not None else "unconfigured: the arm is not open"
            return OK, state, {"state": state.split(":")[0]}
        safety = loop.safety
        queued = self.inbox.remaining(loop.step)
        since = self.chunks.age(now)
        # over 10 s, not between two reports: one busy second (a model loading beside the loop)
        # would make rqt flicker; such a second shows in missed_slots and the worst period
        recent = loop.newest_periods(RECENT_PERIODS)
        values = {"loop_hz": round(len(recent) / sum(recent), 2) if recent else 0.0, "loop_count": loop.ticks,
                  "missed_slots": loop.missed, "period_ms_max_10s": round(1e3 * max(recent), 2) if recent else 0.0,
                  **rate_values({"chunks": self.chunks}, now), "queued_actions": queued,
                  "seconds_since_chunk": "never" if since is None else round(since, 2),
                  "enabled": safety.enabled, "torque_on": safety.torque_on,
                  "rejected_commands": safety.rejected, "clamped_commands": safety.clamped,
                  "rejected_chunks": self.rejected_chunks}
        if self.p.backend == "sim":
            values["task_success"] = self.success
        if loop.error is not None:
            return ERROR, f"control loop stopped: {loop.error}", values
        if not safety.torque_on:
            return WARN, "torque off: commands went stale (call arm_driver/enable to resume)", values
        if not safety.enabled:
            return OK, "disabled: holding position", values
        if queued == 0:
            waited = "yet" if since is None else f"for {since:.1f} s"
            return WARN, f"holding position: no action_chunk {waited}", values
        return OK, "following action_chunk", values


main = main_for(ArmDriverNode)
