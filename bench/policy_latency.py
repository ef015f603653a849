"""ACT inference latency: LeRobot's own call vs nsm's torch and onnxruntime backends.

The same randomly initialised ACT (ResNet18 backbone, default transformer, chunk 100) with
two cameras at 480x640 and at 240x320 (the contract's size), calls interleaved so every variant sees the same
machine state, p50/p99 over `--calls` calls after warm-up:

- lerobot:          LeRobot's processors + `ACTPolicy.predict_action_chunk` (torch)
- nsm torch:        nsm's LeRobotChunkPolicy on the torch backend (the same forward)
- nsm onnxruntime:  nsm's LeRobotChunkPolicy on the ONNX export

plus observation-to-first-action latency through the AsyncChunkRuntime (onnxruntime).

    .venv/bin/python bench/policy_latency.py [--calls 50] [--image-sizes 480x640,240x320] [--threads 2]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402
from nsm.contract import Observation  # noqa: E402
from nsm.policy.export import export_onnx  # noqa: E402
from nsm.policy.init import init_act  # noqa: E402
from nsm.policy.lerobot_policy import LeRobotChunkPolicy  # noqa: E402
from nsm.policy.model_dir import PolicyDir  # noqa: E402
from nsm.policy.runtime import AsyncChunkRuntime  # noqa: E402


def lerobot_call(path: Path):
    """What a LeRobot user runs: from_pretrained (through PolicyDir.load_policy, which builds the
    ResNet with GroupNorm for a model that learned it), the saved processors, predict_action_chunk."""
    from lerobot.policies.factory import make_pre_post_processors

    policy = PolicyDir(path).load_policy()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(path))

    def call(obs: Observation) -> np.ndarray:
        frame = {"observation.state": torch.tensor(obs.state, dtype=torch.float32)}
        for name, image in obs.images.items():
            frame[f"observation.images.{name}"] = torch.from_numpy(image).permute(2, 0, 1).float() / 255
        with torch.inference_mode():
            return post(policy.predict_action_chunk(pre(frame)))[0].numpy()

    return call


def stats(ms: list[float]) -> dict:
    a = np.array(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 1), "p99_ms": round(float(np.percentile(a, 99)), 1),
            "min_ms": round(float(a.min()), 1), "calls": len(a)}


def first_action_latency(policy, obs_for, runs: int) -> list[float]:
    """From handing the runtime an observation with an empty queue to its first action."""
    out = []
    for k in range(runs):
        rt = AsyncChunkRuntime(policy, 6, threshold=0.5, max_obs_age=10.0).start()
        started = time.perf_counter()
        obs = obs_for(k)
        action = rt.act(obs)
        while action is None:
            time.sleep(0.001)
            action = rt.act(Observation(obs.step, obs.stamp, obs.state, obs.images))
        out.append(1e3 * (time.perf_counter() - started))
        rt.stop()
    return out


def measure(h: int, w: int, cameras: list[str], args) -> dict:
    rng = np.random.default_rng(0)

    def obs_for(k):
        return Observation(0, time.monotonic(), rng.normal(size=6),
                           {c: rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for c in cameras})

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "act"
        export_onnx(init_act(path, cameras, 6, (h, w), chunk_size=100))
        ours_ort = LeRobotChunkPolicy(path, "onnxruntime", threads=args.threads)
        variants = {"lerobot predict_action_chunk (torch)": lerobot_call(path),
                    "nsm torch": LeRobotChunkPolicy(path, "torch", threads=args.threads).predict_chunk,
                    "nsm onnxruntime": ours_ort.predict_chunk}
        times = {name: [] for name in variants}
        worst = 0.0
        for i in range(args.warmup + args.calls):
            obs = obs_for(i)
            outputs = {}
            for name, call in variants.items():
                started = time.perf_counter()
                outputs[name] = call(obs)
                if i >= args.warmup:
                    times[name].append(1e3 * (time.perf_counter() - started))
            reference = outputs["lerobot predict_action_chunk (torch)"]
            worst = max(worst, *(float(np.abs(o - reference).max()) for o in outputs.values()))
            print(f"\r{h}x{w}: {i + 1}/{args.warmup + args.calls}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        first = first_action_latency(ours_ort, obs_for, runs=10)
    results = {name: stats(ms) for name, ms in times.items()}
    base = results["lerobot predict_action_chunk (torch)"]["p50_ms"]
    for name in results:
        results[name]["speedup_vs_lerobot_p50"] = round(base / results[name]["p50_ms"], 2)
    results["observation_to_first_action (nsm onnxruntime, runtime)"] = stats(first)
    results["max_abs_diff_vs_lerobot"] = worst
    for name, r in results.items():
        if isinstance(r, dict):
            print(f"{h}x{w} {name:>56}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms"
                  + (f", {r['speedup_vs_lerobot_p50']}x" if "speedup_vs_lerobot_p50" in r else ""))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-sizes", default="480x640,240x320")
    parser.add_argument("--cameras", default="front,wrist")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cameras = args.cameras.split(",")
    results = {"config": {"policy": "ACT, ResNet18, dim_model 512, 4 encoder + 1 decoder layers, chunk 100, random weights",
                          "cameras": cameras, "threads": args.threads, "calls": args.calls, "warmup": args.warmup}}
    for size in args.image_sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        results[size] = measure(h, w, cameras, args)
    print(f"wrote {write_result('policy_latency', results)}")


if __name__ == "__main__":
    main()
