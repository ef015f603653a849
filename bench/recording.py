"""Episode recording throughput per format, against the disk's own write speed, in one run.

Data: two 480x640 cameras (rendered sim frames with sensor-like noise, sigma 2 levels, so
compression sees camera-like images; flat-shaded renders alone compress 20x, no real
camera does) plus joint states at 30 Hz, --seconds of it (default 60 s: 1800 frames, 3.3 GB raw).
For each format: (1) as fast as the writer goes (the producer waits for queue room):
throughput as a multiple of real time and MB/s of episode data; (2) at real time (30 Hz,
the control loop's non-blocking hand-over, --realtime seconds): dropped frames, and the
rate of a camera thread capturing beside it (a collapsing camera rate during recording is
a failure users report). The disk's raw speed is measured the same way: sequential 4 MiB
writes of the same amount of data. Every timing ends with the data on the disk (fsync), so
the page cache cannot make a format look faster than the disk.

    .venv/bin/python bench/recording.py [--seconds 60] [--realtime 20] [--out DIR]
"""
import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.contract import CameraSpec, load_contract  # noqa: E402
from nsm.recording.background import EpisodeFrame  # noqa: E402
from nsm.recording.hdf5_writer import Hdf5EpisodeWriter  # noqa: E402
from nsm.recording.mcap_writer import McapEpisodeWriter  # noqa: E402
from nsm.sim.expert import PickPlaceExpert  # noqa: E402
from nsm.sim.scene import SimScene  # noqa: E402

H, W, FPS = 480, 640, 30
FORMATS = {
    "hdf5 raw": lambda path, c, cams: Hdf5EpisodeWriter(path.with_suffix(".hdf5"), c, cams, sim=True, policy="bench",
                                                        compression=None),
    "hdf5 lzf": lambda path, c, cams: Hdf5EpisodeWriter(path.with_suffix(".hdf5"), c, cams, sim=True,
                                                                  policy="bench", compression="lzf"),
    "mcap raw": lambda path, c, cams: McapEpisodeWriter(path, c, cams, start_ns=0, image_format="raw"),
    "mcap jpeg": lambda path, c, cams: McapEpisodeWriter(path, c, cams, start_ns=0, image_format="jpeg"),
    "mcap raw + zstd": lambda path, c, cams: McapEpisodeWriter(path, c, cams, start_ns=0, image_format="raw",
                                                               compression="zstd"),
}


def camera_frames(count: int = 60) -> dict[str, list[np.ndarray]]:
    """480x640 renders of both sim cameras along an expert episode (cycled to fill the data)."""
    import mujoco  # after nsm, which picks the headless GL backend

    base = load_contract("so101")
    contract = base.model_copy(update={"cameras": tuple(CameraSpec(name=c.name, width=W, height=H, fps=FPS)
                                                        for c in base.cameras)})
    scene = SimScene(contract, 0)
    expert = PickPlaceExpert(contract, scene)
    expert.reset()
    data = mujoco.MjData(scene.model)
    frames = {c.name: [] for c in contract.cameras}
    picks = set(np.linspace(0, len(expert.plan) - 1, count).astype(int))
    with mujoco.Renderer(scene.model, H, W) as renderer:
        for step, row in enumerate(expert.plan):
            scene.step(row)
            if step in picks:
                scene.snapshot(data)
                for cam in frames:
                    renderer.update_scene(data, camera=cam)
                    noise = np.random.default_rng(step).normal(0, 2, (H, W, 3))
                    frames[cam].append(np.clip(renderer.render() + noise, 0, 255).astype(np.uint8))
    return frames


def episode_frames(images: dict[str, list[np.ndarray]], n: int):
    q = np.zeros(6)
    k = len(next(iter(images.values())))
    for t in range(n):
        yield EpisodeFrame(q + t * 1e-3, q, q + t * 1e-3, {cam: frames[t % k] for cam, frames in images.items()}, t / FPS)


def files_of(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]


def synced(path: Path) -> int:
    """fsync every file of an episode (a file or a bag folder); its size in bytes."""
    for file in files_of(path):
        fd = os.open(file, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    return sum(f.stat().st_size for f in files_of(path))


def disk_speed(folder: Path, nbytes: int) -> float:
    """MB/s of sequential 4 MiB writes, fsynced."""
    block = os.urandom(4 * 2**20)
    path = folder / "disk_speed.bin"
    started = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(max(1, nbytes // len(block))):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - started
    path.unlink()
    return nbytes / 1e6 / seconds


class CameraProbe:
    """A thread that 'captures' at 30 Hz (copies a 480x640 frame): its achieved rate shows
    whether recording starves the camera."""

    def __init__(self, image: np.ndarray):
        self.image, self.frames, self._stop = image, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        next_due = time.monotonic()
        while not self._stop.is_set():
            _ = self.image.copy()
            self.frames += 1
            next_due += 1 / FPS
            self._stop.wait(max(0.0, next_due - time.monotonic()))

    def __enter__(self):
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.fps = self.frames / (time.monotonic() - self._started)


def run_format(make, folder: Path, contract, cameras, images, frames: int, realtime_s: float) -> dict:
    path = folder / "episode_0"
    writer = make(path, contract, cameras)
    started = time.perf_counter()
    for frame in episode_frames(images, frames):
        writer.add_frame(frame, block=True)
    out = writer.close()
    size = synced(out)
    seconds = time.perf_counter() - started
    raw_mb = frames * sum(img[0].nbytes for img in images.values()) / 1e6
    shutil.rmtree(out) if out.is_dir() else out.unlink()

    writer = make(path, contract, cameras)
    ticks = int(realtime_s * FPS)
    t0 = time.monotonic()
    with CameraProbe(images[cameras[0]][0]) as probe:
        for k, frame in enumerate(episode_frames(images, ticks)):
            time.sleep(max(0.0, t0 + k / FPS - time.monotonic()))
            writer.add_frame(frame)
        out = writer.close()
    dropped = writer.dropped
    shutil.rmtree(out) if out.is_dir() else out.unlink()
    return {"x_realtime": round(frames / FPS / seconds, 2), "MB_per_s_written": round(size / 1e6 / seconds, 1),
            "MB_per_s_of_raw_data": round(raw_mb / seconds, 1), "bytes_per_frame": int(size / frames),
            "size_vs_raw": round(size / 1e6 / raw_mb, 3), "realtime_seconds": realtime_s,
            "realtime_dropped_frames": dropped, "camera_thread_fps_while_recording": round(probe.fps, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of data per format")
    parser.add_argument("--realtime", type=float, default=20.0, help="seconds of the real-time (30 Hz) run per format")
    parser.add_argument("--out", type=Path, default=None, help="folder on the disk to measure (default: a temp dir)")
    args = parser.parse_args()
    images = camera_frames()
    cameras = list(images)
    base = load_contract("so101")
    contract = base.model_copy(update={"cameras": tuple(CameraSpec(name=c, width=W, height=H, fps=FPS) for c in cameras)})
    frames = int(args.seconds * FPS)
    raw_bytes = frames * sum(img[0].nbytes for img in images.values())
    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
        folder = Path(tmp)
        disk = disk_speed(folder, raw_bytes)
        results = {"data": {"seconds": args.seconds, "frames": frames, "cameras": f"{len(cameras)} x {H}x{W} rgb8",
                            "raw_MB": round(raw_bytes / 1e6), "raw_MB_per_s_at_30Hz": round(raw_bytes / 1e6 / args.seconds, 1)},
                   "disk_MB_per_s": round(disk, 1), "formats": {}}
        print(f"disk: {disk:.0f} MB/s sequential; data: {raw_bytes / 1e6:.0f} MB raw")
        for name, make in FORMATS.items():
            r = results["formats"][name] = run_format(make, folder, contract, cameras, images, frames, args.realtime)
            r["vs_disk"] = round(r["MB_per_s_written"] / disk, 2)
            print(f"{name:>20}: {r['x_realtime']}x real time, {r['MB_per_s_written']} MB/s written "
                  f"({100 * r['vs_disk']:.0f}% of the disk), size {100 * r['size_vs_raw']:.0f}% of raw; at 30 Hz: "
                  f"{r['realtime_dropped_frames']} dropped, camera thread {r['camera_thread_fps_while_recording']} fps")
    print(f"wrote {write_result('recording', results)}")


if __name__ == "__main__":
    main()
