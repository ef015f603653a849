"""`nsm demo`: the cores composed in one process, the simulated SO-101 end to end.

The control loop is `nsm.control.ControlLoop`, the same class arm_driver_node runs; here
its action source is the async chunk runtime in this process, and its sinks are the
episode writers and the telemetry writer instead of ROS publishers.
"""
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from nsm.app.demo_settings import DemoConfig
from nsm.arm.safety import SafetyFilter
from nsm.arm.sim import SimArm
from nsm.camera.base import Camera
from nsm.camera.sim import ProcessSimCamera, SimCamera
from nsm.contract import load_contract
from nsm.control import ControlLoop, Tick
from nsm.paths import prepare_out
from nsm.policy.runtime import AsyncChunkRuntime
from nsm.recording.background import ChunkRecord, EpisodeFrame
from nsm.recording.episodes import next_episode_path
from nsm.recording.hdf5_writer import Hdf5EpisodeWriter
from nsm.recording.mcap_writer import McapEpisodeWriter
from nsm.sim.expert import PickPlaceExpert, WaypointExpert
from nsm.sim.scene import SimScene
from nsm.telemetry import rows
from nsm.telemetry.db import connect
from nsm.telemetry.episodes import record_episode
from nsm.telemetry.sinks import WriterStats
from nsm.telemetry.writer import TelemetryWriter

log = logging.getLogger(__name__)

@dataclass
class DemoSummary:
    episodes: list[Path]
    frames: int
    period_ms: np.ndarray  # every control period measured, ms
    camera_fps: dict[str, float]
    camera_dropped: dict[str, int]  # capture slots each camera missed at its fps
    inference_ms: np.ndarray
    chunks: int
    empty_ticks: int
    dropped_frames: int
    rejected_commands: int
    telemetry: WriterStats
    db_url: str
    bags: list[Path] = field(default_factory=list)
    successes: list[bool] = field(default_factory=list)  # the task check at the end, per episode
    success_steps: list[int | None] = field(default_factory=list)  # first step the check held, per episode
    view_url: str = ""  # the live view (--view): Rerun's web viewer
    view_dropped: int = 0  # ticks and chunks the live view had no room for (never waited for)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.period_ms, q)) if len(self.period_ms) else float("nan")


def telemetry_sink(telemetry: TelemetryWriter, names: list[str]) -> Callable[[Tick], None]:
    """The rows a tick logs: joint states, the command sent, loop timing, the battery once a second."""
    def log_tick(tick: Tick) -> None:
        r = tick.reading
        telemetry.log("joint_states", rows.joint_states(names, r.position, r.velocity, r.effort))
        telemetry.log("joint_commands", rows.joint_commands(names, tick.command))
        telemetry.log("loop_timing", rows.loop_timing(tick.period, time.monotonic() - tick.started, tick.step))
        if tick.battery is not None:
            b = tick.battery
            telemetry.log("battery", rows.battery(b.voltage, b.current, b.percentage))

    return log_tick


class Demo:
    """`nsm demo`: constructing it checks every input (contract, cameras, output folder,
    database) so bad input fails before anything moves; `run()` then runs the episodes."""

    def __init__(self, cfg: DemoConfig):
        self.cfg = cfg
        self.contract = load_contract(cfg.arm.robot)
        names = cfg.recorder.cameras
        self.specs = [self.contract.camera(n) for n in names]
        self.out = prepare_out(Path(cfg.recorder.out))
        self.db_url = cfg.telemetry.db_url
        self.engine = connect(self.db_url)  # reachable and migrated, or one clear error before anything moves
        self.steps = int(round(cfg.seconds * self.contract.fps))
        self.scene = SimScene(self.contract, cfg.arm.seed)
        self.view_server = None
        if cfg.view:
            from nsm.viewer.server import serve_live  # Rerun only when asked for

            self.view_server = serve_live(cfg.view_port, cfg.view_grpc_port)
        p = cfg.policy
        if p.model_path:
            from nsm.policy.lerobot_policy import LeRobotChunkPolicy

            self.policy = LeRobotChunkPolicy(Path(p.model_path), p.backend, self.contract, names)
        elif p.expert == "pick_place":
            self.policy = PickPlaceExpert(self.contract, self.scene, p.chunk_size)
        else:
            self.policy = WaypointExpert(self.contract, p.chunk_size)

    @property
    def total_steps(self) -> int:
        return self.cfg.episodes * self.steps

    def run(self, on_step: Callable[[int], None] | None = None) -> DemoSummary:
        """Run every episode; `on_step(n)` gets the number of control steps done so far."""
        cfg, contract, steps = self.cfg, self.contract, self.steps
        telemetry = TelemetryWriter(self.db_url, cfg.telemetry.robot_id, Path(cfg.telemetry.spool_dir))
        scene = self.scene
        arm = SimArm(scene)
        names = contract.joint_names
        cameras: list[Camera] = []
        episodes, bags, periods, latencies, successes, success_steps = [], [], [], [], [], []
        view = None
        if self.view_server is not None:
            from nsm.viewer.live import LiveView
            from nsm.viewer.server import grpc_url

            view = LiveView(names, [s.name for s in self.specs], grpc_url(grpc_port=cfg.view_grpc_port), contract.period)
        view_started = time.monotonic()
        chunks = empty = dropped = rejected = frames = 0
        try:
            camera_class = ProcessSimCamera if cfg.render == "process" else SimCamera
            for spec in self.specs:
                cameras.append(camera_class(scene, spec).start())
            for episode in range(cfg.episodes):
                scene.reset(cfg.arm.seed + episode)
                reset_at = time.monotonic()
                for cam in cameras:  # the first observation must show the new world, not the last one's end
                    cam.frame_after(reset_at)
                merge_coeff = cfg.arm.merge_coeff if cfg.arm.merge_coeff >= 0 else None
                runtime = AsyncChunkRuntime(self.policy, len(contract.joints), cfg.policy.threshold, cfg.arm.merge,
                                            merge_coeff).start()
                path, cams = next_episode_path(self.out), [s.name for s in self.specs]
                recorder = Hdf5EpisodeWriter(path, contract, cams, sim=True, policy=self.policy.name,
                                             compression=cfg.recorder.hdf5_compression)
                recorders = [recorder]
                if cfg.recorder.bag:
                    recorders.append(McapEpisodeWriter(path.with_suffix(""), contract, cams, start_ns=time.time_ns(),
                                                       policy=self.policy.name, image_format=cfg.recorder.bag_images,
                                                       compression="zstd" if cfg.bag_zstd else None))
                done = episode * steps
                first_success: list[int] = []

                def record(tick: Tick, recorders=recorders) -> None:
                    r = tick.reading
                    frame = EpisodeFrame(r.position, r.velocity, tick.command, tick.images, tick.t)
                    for writer in recorders:
                        writer.add_frame(frame)

                def progress(tick: Tick, done: int = done, first_success: list = first_success) -> None:
                    if not first_success and scene.success():
                        first_success.append(tick.step)
                    if on_step is not None:
                        on_step(min(done + tick.step + 1, done + steps))

                sinks = [record, telemetry_sink(telemetry, names), progress] + ([view.tick] if view else [])
                loop = ControlLoop(contract, arm, runtime, SafetyFilter(contract, arm.read().position), cameras, sinks)

                def record_chunk(chunk: np.ndarray, obs, recorders=recorders, loop=loop) -> None:
                    """On the policy worker: each chunk as it joins the queue, on the episode's time axis."""
                    arrived = ChunkRecord(chunk, obs.step * contract.period, time.monotonic() - loop.stamp0)
                    for writer in recorders:
                        writer.add_chunk(arrived)
                    if view:
                        view.chunk(arrived.actions, arrived.observed, arrived.arrived)

                runtime.on_chunk = record_chunk  # before the loop's first tick asks for a chunk
                started_at = datetime.now(UTC)
                success = None
                if view:
                    view.episode(time.monotonic() - view_started)
                try:
                    loop.start(steps).join()
                    success = scene.success()
                finally:
                    loop.stop()
                    runtime.stop()
                    episodes.append(recorder.close(success=success))
                    bags += [r.close(success=success) for r in recorders[1:]]
                successes.append(success)
                success_steps.append(first_success[0] if first_success else None)
                telemetry.log("episode", rows.episode(str(episodes[-1].resolve()), success, recorder.frames,
                                                      loop.ticks * contract.period, self.policy.name))
                try:
                    record_episode(self.engine, cfg.telemetry.robot_id, episodes[-1], started_at,
                                   loop.ticks * contract.period, recorder.frames, success, self.policy.name,
                                   seed=cfg.arm.seed + episode, bag=bags[-1] if cfg.recorder.bag else "")
                except SQLAlchemyError as exc:  # the episode's files are safe; only its index row is missing
                    log.warning("episode %s not added to the episodes table: %s", episodes[-1], exc)
                periods += list(loop.periods)
                latencies += runtime.latencies
                chunks, empty = chunks + runtime.chunks, empty + runtime.empty_ticks
                dropped, rejected = dropped + recorder.dropped, rejected + loop.safety.rejected
                frames += recorder.frames
            camera_fps = {cam.name: cam.measured_fps for cam in cameras}
            camera_dropped = {cam.name: cam.dropped for cam in cameras}
        finally:
            for cam in cameras:
                cam.stop()
            stats = telemetry.close()
            if view:
                view.close()
        shown = make_url(self.db_url).render_as_string(hide_password=True)
        summary = DemoSummary(episodes, frames, 1e3 * np.array(periods), camera_fps, camera_dropped,
                              1e3 * np.array(latencies), chunks, empty, dropped, rejected, stats, shown, bags, successes,
                              success_steps)
        if view:
            from nsm.viewer.server import web_url

            summary.view_url, summary.view_dropped = web_url(web_port=cfg.view_port, grpc_port=cfg.view_grpc_port), view.dropped
        return summary

    def close(self) -> None:
        """Stop the live view's server (the run's view stays up until then)."""
        if self.view_server is not None:
            self.view_server.terminate()
            self.view_server.wait()
