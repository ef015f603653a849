"""recorder_node: episodes from the live topics, started and stopped by service.

One frame per `joint_commands` message (one per control tick): the command is the
`action`, the `joint_states` of the same tick (same stamp) the observation, each camera's
newest image taken by then the images (nsm.recording.pairing: topics arrive out of order).
Every `action_chunk` is kept too, with when it was observed and when it arrived (the
predicted trajectories a reviewer compares with what the arm did). Each episode is an HDF5
file (`episode_<n>.hdf5`) and, with `bag: true`, a rosbag2 MCAP bag of the same frames
beside it (`episode_<n>/`), both written on their own threads.
Services `recorder/start_episode` and `recorder/stop_episode` (std_srvs/Trigger); the stop
answer carries the paths and the episode's audit (frames, dropped, rate vs the contract, and
per camera the ticks recorded with the tick before's frame: best-effort frames lost or late).
An episode's outcome is the newest task check on `sim/success` when it closes: in simulation
the scene's own check, on a real robot (nobody publishes it) unknown, never guessed. Each
closed episode is announced on `recorder/episodes` (std_msgs/String, the telemetry `episode`
row as JSON), which db_bridge_node logs: the fleet dashboard's episodes come from there.

/diagnostics: recording or idle, per-stream input rates, frames written, frames dropped,
commands left unpaired (no state or image at all), camera frames repeated,
writer queue depth; WARN while a recording stream runs below 80% of the contract's rate.
"""
import json
from pathlib import Path

import numpy as np
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from nsm.contract import load_contract
from nsm.errors import NsmError
from nsm.paths import prepare_out
from nsm.recording.background import BackgroundEpisodeWriter, ChunkRecord, EpisodeFrame
from nsm.recording.episodes import next_episode_path
from nsm.recording.hdf5_writer import Hdf5EpisodeWriter
from nsm.recording.mcap_writer import McapEpisodeWriter
from nsm.recording.pairing import TickPairer
from nsm.ros import convert
from nsm.ros.node_main import (
    COMMANDS_QOS,
    LATCHED_QOS,
    OK,
    SENSOR_QOS,
    WARN,
    ManagedNode,
    declare,
    main_for,
    publish_diagnostics,
    rate_values,
)
from nsm.settings import RecorderSettings
from nsm.stats import RateMeter
from nsm.telemetry import rows

OUTCOMES = {True: "task done", False: "task not done", None: "outcome unknown"}


class RecorderNode(ManagedNode):
    """Managed: configure checks the output folder (writable, or one error), activate accepts
    start_episode, deactivate closes an episode in progress, cleanup forgets the folder."""

    def __init__(self):
        super().__init__("recorder_node")
        self.p = p = declare(self, RecorderSettings)
        self.contract = load_contract(p.robot)
        self.names = self.contract.joint_names
        self.cameras = [self.contract.camera(c).name for c in p.cameras]
        self.writers: list[BackgroundEpisodeWriter] = []  # HDF5 first, then the bag; empty: idle
        self.configured = self.active = False
        self.t0 = 0.0
        self.pairer = TickPairer(self.cameras, self.t0)
        self.rates = {name: RateMeter() for name in ("joint_states", "joint_commands", *self.cameras)}
        self.recorded = RateMeter()
        self.task_success: bool | None = None  # the newest sim/success; None: none published (a real robot)
        self.pub_episode = self.create_publisher(String, "recorder/episodes", COMMANDS_QOS)
        self.create_subscription(Bool, "sim/success", lambda m: setattr(self, "task_success", bool(m.data)), LATCHED_QOS)
        self.create_subscription(JointState, "joint_states", self.on_state, COMMANDS_QOS)
        self.create_subscription(JointState, "joint_commands", self.on_command, COMMANDS_QOS)
        self.create_subscription(JointTrajectory, "action_chunk", self.on_chunk, COMMANDS_QOS)
        for cam in self.cameras:
            self.create_subscription(Image, f"camera/{cam}/image_raw", lambda m, c=cam: self.on_image(c, m), SENSOR_QOS)
        self.create_service(Trigger, "recorder/start_episode", self.on_start)
        self.create_service(Trigger, "recorder/stop_episode", self.on_stop)
        publish_diagnostics(self, self.report)

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def on_state(self, msg: JointState) -> None:
        self.rates["joint_states"].tick(self.now())
        stamp = convert.from_time(msg.header.stamp)
        if not self.writers or stamp < self.t0:
            return  # not recording, or measured before this episode began (still queued): not part of it
        try:
            position = convert.msg_to_positions(msg, self.names)
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        velocity = np.asarray(msg.velocity, float) if len(msg.velocity) == len(self.names) else np.zeros(len(self.names))
        self.pairer.state(stamp, position, velocity)
        self._write(self.pairer.frames(self.now()))

    def on_image(self, camera: str, msg: Image) -> None:
        try:
            image = convert.msg_to_image(msg)
        except NsmError as exc:
            self.get_logger().warning(f"camera {camera}: {exc}", throttle_duration_sec=5.0)
            return
        self.rates[camera].tick(self.now())
        stamp = convert.from_time(msg.header.stamp)
        if self.writers and stamp >= self.t0:  # not one taken before this episode began (still queued): it
            self.pairer.image(camera, stamp, image)  # may show the world as it was
            self._write(self.pairer.frames(self.now()))

    def on_command(self, msg: JointState) -> None:
        self.rates["joint_commands"].tick(self.now())
        if not self.writers:
            return
        try:
            action = convert.msg_to_positions(msg, self.names)
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        self.pairer.command(convert.from_time(msg.header.stamp), action, self.now())
        self._write(self.pairer.frames(self.now()))

    def _write(self, frames: list[EpisodeFrame]) -> None:
        for frame in frames:
            for writer in self.writers:
                writer.add_frame(frame)
            self.recorded.tick(self.now())

    def on_chunk(self, msg: JointTrajectory) -> None:
        if not self.writers:
            return
        try:
            stamp, _, positions = convert.msg_to_chunk(msg, self.names)
        except NsmError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=5.0)
            return
        if stamp < self.t0:
            return  # predicted from an observation before this episode began
        for writer in self.writers:
            writer.add_chunk(ChunkRecord(positions, stamp - self.t0, self.now() - self.t0))

    def configure(self) -> None:
        prepare_out(Path(self.p.out))
        self.configured = True

    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False
        if self.writers:  # an episode in progress ends here, closed, not lost
            self._end_episode(self.now() - self.t0)

    def release(self) -> None:
        self.deactivate()
        self.configured = False

    def on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if not self.active:
            response.success, response.message = False, "not active (lifecycle: configure, then activate)"
            return response
        if self.writers:
            response.success, response.message = False, f"already recording {self.writers[0].path}"
            return response
        self.t0 = self.now()
        # frames pair commands with inputs taken from here on: the last frame before the start
        # may show another world (the sim reset between episodes) or a moment long gone
        self.pairer = TickPairer(self.cameras, self.t0)
        path = next_episode_path(Path(self.p.out))
        try:
            self.writers = [Hdf5EpisodeWriter(path, self.contract, self.cameras, sim=self.p.sim, policy=self.p.policy,
                                              compression=self.p.hdf5_compression)]
            if self.p.bag:
                self.writers.append(McapEpisodeWriter(
                    path.with_suffix(""), self.contract, self.cameras, start_ns=int(self.t0 * 1e9),
                    namespace=self.get_namespace(), policy=self.p.policy, image_format=self.p.bag_images))
        except NsmError as exc:  # the bag could not open: the HDF5 file already open is closed (empty)
            self._close_all(self.writers)
            self.writers, response.success, response.message = [], False, str(exc)
            return response
        self.recorded = RateMeter()
        response.success, response.message = True, " ".join(str(w.path) for w in self.writers)
        return response

    def on_stop(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if not self.writers:
            response.success, response.message = False, "not recording"
            return response
        seconds = self.now() - self.t0
        self._write(self.pairer.frames(self.now(), force=True))  # commands still waiting for their inputs
        writers = self.writers
        paths, errors = self._end_episode(seconds)
        rate = writers[0].frames / max(seconds, 1e-9)
        audit = (f"{writers[0].frames} frames, {max(w.dropped for w in writers)} dropped, "
                 f"{rate:.1f} of {self.contract.fps:g} fps, {OUTCOMES[self.task_success]}, frames repeated: "
                 + ", ".join(f"{camera} {n}" for camera, n in self.pairer.repeated.items()))
        response.success = not errors
        response.message = "; ".join([*map(str, paths), audit, *errors])
        if rate < 0.8 * self.contract.fps:
            self.get_logger().warning(f"episode below its rate: {audit}")
        return response

    def _end_episode(self, seconds: float) -> tuple[list[Path], list[str]]:
        """Close the episode (`seconds` long) with the task's outcome as known now and announce it
        on `recorder/episodes`: the row's duration is the one the stop answer audits."""
        writers, self.writers = self.writers, []
        paths, errors = self._close_all(writers, self.task_success)
        if paths and paths[0].suffix == ".hdf5":  # the episode file (not only its bag) was written
            row = rows.episode(str(paths[0].resolve()), self.task_success, writers[0].frames, seconds, self.p.policy)
            self.pub_episode.publish(String(data=json.dumps(row)))
        return paths, errors

    @staticmethod
    def _close_all(writers: list[BackgroundEpisodeWriter], success: bool | None = None) -> tuple[list[Path], list[str]]:
        """Close every writer even if one fails: each format keeps what it wrote."""
        paths, errors = [], []
        for writer in writers:
            try:
                paths.append(writer.close(success=success))
            except NsmError as exc:
                errors.append(str(exc))
        return paths, errors

    def report(self, now: float):
        values = rate_values(self.rates, now)
        values["recording"] = str(self.writers[0].path) if self.writers else "idle"
        if not self.active:
            state = "inactive: not recording" if self.configured else "unconfigured: output folder not checked"
            return OK, state, values | {"state": state.split(":")[0]}
        if not self.writers:
            return OK, "idle", values
        values |= {"frames": self.writers[0].frames, "dropped": max(w.dropped for w in self.writers),
                   "unpaired_commands": self.pairer.unpaired,
                   **{f"{camera}_frames_repeated": n for camera, n in self.pairer.repeated.items()},
                   "queue_depth": max(w.queue_depth for w in self.writers), **rate_values({"recorded": self.recorded}, now)}
        slow = [name for name, meter in self.rates.items() if now - self.t0 > 2 and meter.rate(now) < 0.8 * self.contract.fps]
        if slow:
            return WARN, f"recording below {self.contract.fps:g} Hz: {', '.join(slow)}", values
        return OK, "recording", values


main = main_for(RecorderNode)
