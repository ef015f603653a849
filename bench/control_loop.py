"""The 30 Hz control loop's timing: the deployed node graph, and `nsm demo` under load, side by side.

Deployed: the bringup plan (what `ros2 launch nsm bringup.launch.py` starts) as processes on
this machine: 2 sim cameras rendering, arm_driver_node, policy_node with a full-size ACT
(2 cameras, 240x320) on ONNX Runtime, recorder_node recording an episode (HDF5 + MCAP),
db_bridge_node writing to PostgreSQL. The loop is measured from the driver's own tick
stamps (`joint_states` header stamps) received by an independent rclpy subscriber, for
--seconds, once with the control loop on its own real-time thread (what robots run) and
once with the rclpy-timer loop the node used before (`loop:=timer`).

In-process: each case runs `nsm demo` (scripted expert, recorder, telemetry) for --seconds while two
480x640 cameras capture concurrently (video files decoded in real time, as a USB camera's
frames would be) and the sim renders its front + wrist cameras either on threads of the
robot's process or in processes of their own. Jitter is |period - 33.33 ms|; a missed cycle
is a period over 1.5x the target (a control slot without a tick). The first case is a bare
30 Hz sleep loop in an otherwise idle process: the floor this machine (a shared VM) sets.

    .venv/bin/python bench/control_loop.py [--seconds 60]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.app.demo import Demo
from nsm.app.demo_settings import demo_config  # noqa: E402
from nsm.bringup import plan  # noqa: E402
from nsm.camera.opencv import VideoFileCamera  # noqa: E402
from nsm.contract import CameraSpec, load_contract  # noqa: E402

CASES = {
    "loop only": {"cameras": [], "usb": False, "render": "process"},
    "2 usb-like + sim rendering on threads": {"cameras": ["front", "wrist"], "usb": True, "render": "thread"},
    "2 usb-like + sim rendering in processes": {"cameras": ["front", "wrist"], "usb": True, "render": "process"},
}


def make_video(path: Path, frames: int = 90) -> Path:
    """A 480x640 MJPG-like test video: moving gradients, so the decoder does real work."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    y, x = np.mgrid[0:480, 0:640]
    for i in range(frames):
        frame = np.stack([(x + 4 * i) % 256, (y + 2 * i) % 256, (x + y + i) % 256], axis=-1).astype(np.uint8)
        writer.write(frame)
    writer.release()
    return path


def bare_sleep_loop(seconds: float, period: float) -> np.ndarray:
    """Periods (ms) of a loop that only sleeps to an absolute 30 Hz schedule, as ControlLoop does."""
    t0, starts = time.monotonic(), []
    for step in range(int(seconds / period)):
        time.sleep(max(0.0, t0 + step * period - time.monotonic()))
        starts.append(time.monotonic())
    return 1e3 * np.diff(starts)


def timing(p: np.ndarray, period: float) -> dict:
    jitter = np.abs(p - period)
    return {
        "period_ms": {q: round(float(np.percentile(p, float(q[1:]))), 2) for q in ("p50", "p99")}
        | {"max": round(float(p.max()), 2)},
        "jitter_ms": {"p50": round(float(np.percentile(jitter, 50)), 3), "p99": round(float(np.percentile(jitter, 99)), 3),
                      "max": round(float(jitter.max()), 3)},
        "missed_cycles": int((p > 1.5 * period).sum()), "ticks": len(p) + 1,
    }


def run_case(case: dict, seconds: float, video: Path) -> dict:
    period = 1e3 / load_contract("so101").fps
    usb = [VideoFileCamera(CameraSpec(name=f"usb{i}", width=640, height=480, fps=30), video) for i in range(2)]
    try:
        for cam in usb if case["usb"] else []:
            cam.start()
        with tempfile.TemporaryDirectory() as out:
            s = Demo(demo_config(seconds=seconds, out=Path(out), camera=case["cameras"], render=case["render"],
                                    db_url=f"sqlite:///{out}/telemetry.db")).run()
        usb_fps = {cam.name: round(cam.measured_fps, 1) for cam in usb if case["usb"]}
        usb_dropped = {cam.name: cam.dropped for cam in usb if case["usb"]}
    finally:
        for cam in usb:
            cam.stop()
    return timing(s.period_ms, period) | {
        "sim_camera_fps": {k: round(v, 1) for k, v in s.camera_fps.items()}, "sim_camera_dropped": s.camera_dropped,
        "usb_camera_fps": usb_fps, "usb_camera_dropped": usb_dropped,
        "frames_recorded": s.frames, "recorder_dropped": s.dropped_frames, "telemetry_rows": s.telemetry.written,
    }


def deployed(seconds: float, loop: str, model: Path, dsn: str, folder: Path) -> dict:
    """The bringup graph as processes; the driver's tick stamps seen by this process's subscriber."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_srvs.srv import Trigger

    from nsm.ros.graph import Graph
    from nsm.ros.node_main import COMMANDS_QOS

    ns = "/nsmbench"
    nodes = [replace(n, overrides={**n.overrides, "loop": loop}) if n.executable == "arm_driver_node" else n
             for n in plan(namespace=ns, cameras="front,wrist", model_path=str(model), db_url=dsn, robot_id=f"bench-{loop}")]
    stamps, diagnostics, recording = [], {}, False
    with Graph(nodes, ns, folder, client="bench_observer") as g:
        g.subscribe(JointState, "joint_states",
                    lambda m: recording and stamps.append(m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec), COMMANDS_QOS)
        g.subscribe(DiagnosticArray, "/diagnostics",
                    lambda m: diagnostics.update({s.name: {kv.key: kv.value for kv in s.values} for s in m.status}),
                    COMMANDS_QOS)
        for managed in (n for n in nodes if n.managed):  # what bringup.launch.py does: configure, then activate
            g.transition(managed.name, "configure", "activate")
        policy = f"{ns}/policy_node"
        g.spin_until(lambda: int(diagnostics.get(policy, {}).get("chunks_count", 0)) > 0, 300,
                     "the first chunk (cameras -> ACT -> chunks)")
        episode = g.call("recorder/start_episode", Trigger).message
        recording = True
        g.spin_for(seconds)
        recording = False
        audit = g.call("recorder/stop_episode", Trigger).message
        driver = diagnostics.get(f"{ns}/arm_driver_node", {})
        inference = diagnostics.get(policy, {})
    periods = 1e3 * np.diff(np.array(stamps))
    return timing(periods, 1e3 * load_contract("so101").period) | {
        "loop": loop, "episode": episode, "recorder_audit": audit.split("; ")[-1],
        "driver_missed_slots": driver.get("missed_slots"), "driver_loop_hz": driver.get("loop_hz"),
        "policy_inference_ms_p50": float(inference.get("inference_ms_p50", "nan")),
        "policy_chunks": int(inference.get("chunks_count", 0)),
    }


def postgres(folder: Path) -> tuple[str, Callable[[], None]]:
    """NSM_TEST_PG_DSN, or a throwaway server (scripts/pg_throwaway.sh) and its stop."""
    if dsn := os.environ.get("NSM_TEST_PG_DSN"):
        return dsn, lambda: None
    script = Path(__file__).resolve().parents[1] / "scripts" / "pg_throwaway.sh"
    out = subprocess.run(["bash", str(script), "start", str(folder / "pg"), "55499"], check=True, capture_output=True,
                         text=True).stdout
    return out.strip().split("=", 1)[1], lambda: subprocess.run(["bash", str(script), "stop", str(folder / "pg")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--skip-demo", action="store_true", help="only the deployed graph")
    args = parser.parse_args()
    period = 1.0 / load_contract("so101").fps
    results = {"bare sleep loop (machine floor)": timing(bare_sleep_loop(args.seconds, period), 1e3 * period)}
    print(f"bare sleep loop: jitter p99 {results['bare sleep loop (machine floor)']['jitter_ms']['p99']} ms")
    with tempfile.TemporaryDirectory() as tmp:
        from nsm.policy.export import export_onnx
        from nsm.policy.init import init_act

        model = init_act(Path(tmp) / "act", ["front", "wrist"], 6, (240, 320), chunk_size=30, small=False)
        export_onnx(model)
        dsn, stop_pg = postgres(Path(tmp))
        try:
            for loop, label in (("thread", "deployed graph: control loop thread (arm_driver_node loop:=thread)"),
                                ("timer", "deployed graph: rclpy timer (arm_driver_node loop:=timer)")):
                folder = Path(tmp) / loop
                folder.mkdir()
                r = results[label] = deployed(args.seconds, loop, model.path, dsn, folder)
                print(f"{label}: jitter p99 {r['jitter_ms']['p99']} ms, max {r['jitter_ms']['max']} ms, "
                      f"missed {r['missed_cycles']}, {r['recorder_audit']}")
        finally:
            stop_pg()
    if args.skip_demo:
        print(f"wrote {write_result('control_loop', results)}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "usb.mp4")
        for label, case in CASES.items():
            r = results[label] = run_case(case, args.seconds, video)
            print(f"{label}: jitter p99 {r['jitter_ms']['p99']} ms, max {r['jitter_ms']['max']} ms, "
                  f"missed {r['missed_cycles']}, sim fps {r['sim_camera_fps']}, usb fps {r['usb_camera_fps']}")
    print(f"wrote {write_result('control_loop', results)}")


if __name__ == "__main__":
    main()
