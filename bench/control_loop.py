"""The 30 Hz control loop's timing while cameras capture and the sim renders, side by side.

Each case runs `nsm demo` (scripted expert, recorder, telemetry) for --seconds while two
480x640 cameras capture concurrently (video files decoded in real time, as a USB camera's
frames would be) and the sim renders its front + wrist cameras either on threads of the
robot's process or in processes of their own. Jitter is |period - 33.33 ms|; a missed cycle
is a period over 1.5x the target (a control slot without a tick). The first case is a bare
30 Hz sleep loop in an otherwise idle process: the floor this machine (a shared VM) sets.

    .venv/bin/python bench/control_loop.py [--seconds 60]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from nsm.camera.opencv import VideoFileCamera  # noqa: E402
from nsm.contract import CameraSpec, load_contract  # noqa: E402
from nsm.pipeline import Demo, DemoConfig  # noqa: E402

CASES = {
    "loop only": {"cameras": [], "usb": False, "render": "process"},
    "2 usb-like + sim rendering on threads": {"cameras": None, "usb": True, "render": "thread"},
    "2 usb-like + sim rendering in processes": {"cameras": None, "usb": True, "render": "process"},
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
        "period_ms": {q: round(float(np.percentile(p, float(q[1:]))), 2) for q in ("p50", "p99")} | {"max": round(float(p.max()), 2)},
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
            s = Demo(DemoConfig(seconds=seconds, out=Path(out), cameras=case["cameras"], render=case["render"])).run()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    period = 1.0 / load_contract("so101").fps
    results = {"bare sleep loop (machine floor)": timing(bare_sleep_loop(args.seconds, period), 1e3 * period)}
    print(f"bare sleep loop: jitter p99 {results['bare sleep loop (machine floor)']['jitter_ms']['p99']} ms")
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "usb.mp4")
        for label, case in CASES.items():
            r = results[label] = run_case(case, args.seconds, video)
            print(f"{label}: jitter p99 {r['jitter_ms']['p99']} ms, max {r['jitter_ms']['max']} ms, "
                  f"missed {r['missed_cycles']}, sim fps {r['sim_camera_fps']}, usb fps {r['usb_camera_fps']}")
    print(f"wrote {write_result('control_loop', results)}")


if __name__ == "__main__":
    main()
